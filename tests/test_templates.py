from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mikotui import templates

MISSED = templates.parameter_names("missed_call")


def test_bare_and_braced_names_are_replaced() -> None:
    values = {"NOTIFICATION_CALLERID": "101", "NOTIFICATION_TO": "201"}
    out = templates.render("From NOTIFICATION_CALLERID to ${NOTIFICATION_TO}.", values)
    assert out == "From 101 to 201."


def test_whole_tokens_only_longest_first() -> None:
    values = {"VM_CALLER": "X", "VM_CALLER_NAME": "Ivan", "VM_CALLERID": "<101>"}
    out = templates.render("VM_CALLER_NAME|VM_CALLERID|VM_CALLER|VM_CALLERX|aVM_CALLER", values)
    assert out == "Ivan|<101>|X|VM_CALLERX|aVM_CALLER"


def test_cyrillic_next_to_a_token() -> None:
    out = templates.render("от NOTIFICATION_CALLERID, звонок", {"NOTIFICATION_CALLERID": "7"})
    assert out == "от 7, звонок"


def test_values_are_not_expanded_again() -> None:
    values = {"NOTIFICATION_CALLERID": "NOTIFICATION_TO", "NOTIFICATION_TO": "201"}
    assert templates.render("NOTIFICATION_CALLERID", values) == "NOTIFICATION_TO"


def test_unknown_parameters_and_suggestion() -> None:
    tpl = "NOTIFICATION_CALERID NOTIFICATION_TO ${FOO} VM_DUR NOTIFICATION_CALERID"
    assert templates.unknown_parameters(tpl, MISSED) == ["NOTIFICATION_CALERID", "FOO", "VM_DUR"]
    assert templates.suggest("NOTIFICATION_CALERID", MISSED) == "NOTIFICATION_CALLERID"
    assert templates.suggest("ZZZ", MISSED) is None
    spans = templates.unknown_spans("x ${FOO}", MISSED)
    assert spans == [(2, 8, "FOO")]


def test_every_parameter_has_descriptions_and_a_sample() -> None:
    for kind in templates.KINDS:
        for p in templates.parameters(kind):
            assert p.description("en") and p.description("ru") and p.sample


@given(st.text(), st.dictionaries(st.sampled_from(MISSED), st.text()))
def test_render_never_leaves_a_known_name_it_was_given(text: str, values: dict) -> None:
    # Whatever surrounds it, a standalone known token is always replaced.
    out = templates.render(f" {text} NOTIFICATION_TO ", {**values, "NOTIFICATION_TO": "§"})
    assert out.endswith(" § ")
