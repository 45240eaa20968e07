"""English and Russian strings: default templates and texts the core and the
UI show. `text(lang, key, **values)` picks one; an unknown language falls back
to English, a key missing in Russian falls back to the English string."""

from __future__ import annotations

import os

DEFAULT_TEMPLATES: dict[str, dict[str, dict[str, str]]] = {
    "en": {
        "missed_call": {
            "subject": "Missed Call from NOTIFICATION_CALLERID",
            "body": (
                "You have a missed call\n\n"
                "From: NOTIFICATION_NAME_FROM NOTIFICATION_CALLERID\n"
                "To: NOTIFICATION_NAME_TO NOTIFICATION_TO\n"
                "Date: NOTIFICATION_DATE\n"
                "Rang for: NOTIFICATION_DURATION s"
            ),
            "footer": "Please contact the caller at your earliest convenience.",
        },
        "voicemail": {
            "subject": "New Voicemail Message from VM_CALLER_NAME VM_CALLER_NUM",
            "body": (
                "A new voicemail message has been left in your mailbox.\n\n"
                "From: VM_CALLERID\n"
                "Date: VM_DATE\n"
                "Length: VM_DUR"
            ),
            "footer": "You can listen to the recording by opening the attached audio file.",
        },
    },
    "ru": {
        "missed_call": {
            "subject": "Пропущенный вызов от NOTIFICATION_CALLERID",
            "body": (
                "У вас пропущенный вызов\n\n"
                "От: NOTIFICATION_NAME_FROM NOTIFICATION_CALLERID\n"
                "Кому: NOTIFICATION_NAME_TO NOTIFICATION_TO\n"
                "Дата: NOTIFICATION_DATE\n"
                "Длительность: NOTIFICATION_DURATION с"
            ),
            "footer": "Пожалуйста, свяжитесь с абонентом при первой возможности.",
        },
        "voicemail": {
            "subject": "Новое голосовое сообщение от VM_CALLER_NAME VM_CALLER_NUM",
            "body": (
                "На ваш почтовый ящик поступило новое голосовое сообщение.\n\n"
                "От: VM_CALLERID\n"
                "Дата: VM_DATE\n"
                "Длительность: VM_DUR"
            ),
            "footer": "Вы можете прослушать запись, открыв прикреплённый к письму аудиофайл.",
        },
    },
}

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "test.subject": "SMTP Settings Test",
        "test.body": (
            "If you receive this email, your email settings are correct.\n\n"
            "Server: {host}\nPort: {port}\nEncryption: {encryption}\nLogin: {auth}"
        ),
        "test.no_auth": "none",
        "attachment.too_big": (
            "The recording ({size_mb:.1f} MB) is larger than the {limit_mb:g} MB limit "
            "and is not attached; listen to it on the PBX."
        ),
        "attachment.missing": "No recording was attached to this voicemail.",
        "attachment.incomplete": (
            "The recording arrived incomplete ({got_kb:.0f} of {expected_kb:.0f} KB); "
            "the full one is on the PBX."
        ),
        "alert.subject": "PBX alert: a {kind} notification could not be delivered",
        "alert.body": (
            "A notification was given up on and kept in the spool's failed/ folder.\n\n"
            "Id: {id}\nKind: {kind}\nSubject: {subject}\nNot delivered to: {recipients}\n"
            "Reason: {reason}\nServer replies:\n{refused}\n\n"
            "See it with `mikotui queue list`; send it again with `mikotui queue retry {id}`."
        ),
    },
    "ru": {
        "test.subject": "Тест настроек SMTP",
        "test.body": (
            "Если вы получили это письмо, значит настройки почты выполнены правильно.\n\n"
            "Сервер: {host}\nПорт: {port}\nШифрование: {encryption}\nЛогин: {auth}"
        ),
        "test.no_auth": "без авторизации",
        "attachment.too_big": (
            "Запись ({size_mb:.1f} МБ) больше предела {limit_mb:g} МБ и не приложена; "
            "прослушайте её на АТС."
        ),
        "attachment.missing": "К этому голосовому сообщению не приложена запись.",
        "attachment.incomplete": (
            "Запись пришла не полностью ({got_kb:.0f} из {expected_kb:.0f} КБ); "
            "полная запись есть на АТС."
        ),
        "alert.subject": "Оповещение АТС: уведомление ({kind}) не доставлено",
        "alert.body": (
            "Уведомление не удалось доставить; оно сохранено в папке failed/ очереди.\n\n"
            "Id: {id}\nТип: {kind}\nТема: {subject}\nНе доставлено: {recipients}\n"
            "Причина: {reason}\nОтветы сервера:\n{refused}\n\n"
            "Список: `mikotui queue list`; отправить снова: `mikotui queue retry {id}`."
        ),
    },
}


def language(requested: str | None = None, configured: str | None = None) -> str:
    """--lang, else [ui] language, else $LANG, else English."""
    for candidate in (requested, configured):
        if candidate in STRINGS:
            return candidate
    env = os.environ.get("LC_ALL") or os.environ.get("LANG") or ""
    return "ru" if env.lower().startswith("ru") else "en"


def text(lang: str, key: str, **values: object) -> str:
    table = STRINGS.get(lang, STRINGS["en"])
    template = table.get(key) or STRINGS["en"][key]
    return template.format(**values) if values else template


def default_templates(lang: str) -> dict[str, dict[str, str]]:
    return DEFAULT_TEMPLATES.get(lang, DEFAULT_TEMPLATES["en"])


# --- the terminal UI (mikotui/app.py, screens/, widgets/) ---------------------
# Kept apart from the core's strings above: `ui(lang, key)` reads only these.

UI_STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "nav.smtp": "SMTP",
        "nav.missed": "Missed calls",
        "nav.voicemail": "Voicemail",
        "nav.outbox": "Outbox",
        "key.save": "Save",
        "key.test": "Send test",
        "key.quit": "Quit",
        "key.cancel": "Cancel",
        "key.close": "Close",
        "key.retry": "Retry",
        "key.purge": "Purge",
        "key.undo": "Undo",
        "key.open": "Open",
        "key.refresh": "Refresh",
        "key.transcript": "Transcript",
        "key.parameters": "Insert parameter",
        "unsaved": "unsaved changes",
        "sandbox.banner": "SANDBOX 127.0.0.1:{port}: mail is captured here, not delivered (F4)",
        "sandbox.captured": "Sandbox captured: {subject}",
        "label.preset": "Provider",
        "preset.gmail": "Gmail",
        "preset.yandex": "Yandex",
        "preset.mailru": "Mail.ru",
        "preset.other": "Other server",
        "preset.gmail.note": "Gmail: login is the full address; with 2-step verification "
                             "use an app password. 587 STARTTLS or 465 SSL.",
        "preset.yandex.note": "Yandex: login is the full address; use an app password and "
                              "allow mail clients in the mailbox settings.",
        "preset.mailru.note": "Mail.ru: login is the full address; use a password for "
                              "external applications.",
        "label.smtp.host": "SMTP host",
        "label.smtp.port": "SMTP port",
        "label.smtp.encryption": "Encryption",
        "label.smtp.verify_certificate": "Verify the server certificate",
        "label.smtp.username": "SMTP login",
        "label.smtp.password": "SMTP password",
        "label.smtp.sender_address": "Sender address",
        "label.smtp.sender_name": "Sender name",
        "label.notifications.admin_email": "Admin email",
        "label.notifications.enabled": "Use notifications (all email alerts)",
        "placeholder.sender_address": "empty: the login",
        "placeholder.missed_call.email": "if no employee email",
        "placeholder.voicemail.email": "gets every voicemail",
        "enc.none": "None",
        "enc.starttls": "STARTTLS",
        "enc.ssl": "SSL/TLS",
        "password.show": "Show",
        "password.hide": "Hide",
        "button.test": "Send test ^T",
        "button.save": "Save ^S",
        "button.transcript": "Transcript F6",
        "label.connection": "What a send will do",
        "label.test_preview": "The test mail",
        "connection.to": "connect to {host}:{port}, {enc}",
        "connection.cert_on": "check the server certificate",
        "connection.cert_off": "NOT check the certificate (self-signed servers only)",
        "connection.login": "log in as {user}",
        "connection.no_login": "send without logging in",
        "connection.disabled": "notifications are OFF: only test mail goes out",
        "connection.invalid": "fix the host and port first",
        "hint.endpoint": "will connect to {host}:{port} with {enc} (from the host field)",
        "hint.465": "port 465 expects SSL/TLS from the first byte; with {enc} the "
                    "connection will hang or fail",
        "hint.587": "port 587 expects STARTTLS; SSL/TLS here fails the handshake",
        "hint.25": "port 25 is plain SMTP; SSL/TLS here fails the handshake",
        "error.whole_number": "must be a whole number",
        "label.missed_call.email": "General email",
        "label.voicemail.email": "Single email",
        "label.subject": "Subject",
        "label.body": "Body",
        "label.footer": "Footer",
        "label.parameters": "Parameters (F7, Enter inserts)",
        "label.preview": "Preview",
        "preview.from": "From",
        "preview.to": "To",
        "preview.subject": "Subject",
        "preview.attachment": "Attachment",
        "preview.nobody": "(nobody: no address set)",
        "preview.unknown": "! unknown parameter in the {part}: {tokens}",
        "part.subject": "subject",
        "part.body": "body",
        "part.footer": "footer",
        "save.blocked_title": "Not saved",
        "save.blocked": "{key}: {message}",
        "save.more": "(and {n} more)",
        "save.failed": "Cannot write {path}: {error}",
        "save.done": "Saved {path}",
        "save.testing": "SMTP settings changed: sending a test mail to {to}",
        "send.blocked": "Not sent: {key}: {message}",
        "send.phase": "Test mail to {to}: {phase}",
        "phase.connect": "connecting…",
        "phase.tls": "TLS handshake…",
        "phase.auth": "logging in…",
        "phase.send": "sending…",
        "phase.done": "done",
        "send.failed_title": "Test mail failed: {kind}",
        "send.done_title": "Test mail sent",
        "send.see_transcript": "F6 shows the transcript.",
        "send.done": "The server accepted the mail for {to} ({seconds} s)",
        "transcript.title": "Last test send",
        "transcript.none": "No test mail sent yet in this session (^T sends one)",
        "transcript.ok": "Accepted for {to}",
        "transcript.failed": "Failed: {kind}",
        "transcript.refused": "Refused: {who}",
        "transcript.empty": "(no transcript)",
        "quit.title": "Unsaved changes",
        "quit.question": "Save the changes before quitting?",
        "quit.save": "Save",
        "quit.discard": "Discard",
        "quit.cancel": "Cancel",
        "test.title": "Send a test mail",
        "test.to": "To:",
        "test.send": "Send",
        "test.bad_address": "not a valid email address",
        "outbox.spool": "Outbox",
        "outbox.captured": "Captured by the sandbox (Enter opens)",
        "outbox.empty": "Nothing waiting: every notification was delivered.",
        "outbox.unreadable": "Cannot read the spool {path}: {error}",
        "outbox.no_captured": "Nothing captured yet: ^T sends a test mail here.",
        "outbox.col.id": "ID",
        "outbox.col.state": "State",
        "outbox.col.kind": "Kind",
        "outbox.col.to": "To",
        "outbox.col.attempts": "Tries",
        "outbox.col.next": "Next try",
        "outbox.col.error": "Last error",
        "outbox.col.time": "Time",
        "outbox.col.subject": "Subject",
        "outbox.col.size": "Size",
        "outbox.queued": "queued",
        "outbox.failed": "failed",
        "outbox.active": "sending",
        "kind.missed": "missed call",
        "kind.voicemail": "voicemail",
        "kind.system": "system",
        "kind.alert": "alert",
        "kind.test": "test",
        "outbox.retry_done": "{id} queued for delivery now",
        "outbox.purge_question": "Purge {id} ({kind} to {to})? It can be restored "
                                 "for 7 days.",
        "outbox.purge_yes": "Purge",
        "outbox.purge_done": "Purged — press u to undo",
        "outbox.restore_done": "{id} restored: queued for delivery now",
        "outbox.nothing_selected": "Select a notification first",
        "outbox.error": "{id}: {error}",
        "outbox.sandbox_only": "Not in sandbox mode: start with --sandbox to capture mail",
        "outbox.now": "now",
        "outbox.in_min": "in {n} min",
        "outbox.owed": "Still owed to",
        "outbox.why_failed": "Given up",
    },
    "ru": {
        "nav.smtp": "SMTP",
        "nav.missed": "Пропущенные",
        "nav.voicemail": "Голосовая почта",
        "nav.outbox": "Очередь",
        "key.save": "Сохранить",
        "key.test": "Тест",
        "key.quit": "Выход",
        "key.cancel": "Отмена",
        "key.close": "Закрыть",
        "key.retry": "Повторить",
        "key.purge": "Удалить",
        "key.undo": "Вернуть",
        "key.open": "Открыть",
        "key.refresh": "Обновить",
        "key.transcript": "Протокол",
        "key.parameters": "Параметр",
        "unsaved": "не сохранено",
        "sandbox.banner": "ПЕСОЧНИЦА 127.0.0.1:{port}: письма остаются здесь, не доставляются (F4)",
        "sandbox.captured": "Песочница получила: {subject}",
        "label.preset": "Провайдер",
        "preset.gmail": "Gmail",
        "preset.yandex": "Яндекс",
        "preset.mailru": "Mail.ru",
        "preset.other": "Другой сервер",
        "preset.gmail.note": "Gmail: логин — полный адрес; при двухэтапной проверке нужен "
                             "пароль приложения. 587 STARTTLS или 465 SSL.",
        "preset.yandex.note": "Яндекс: логин — полный адрес; нужен пароль приложения и "
                              "включённый доступ почтовых программ.",
        "preset.mailru.note": "Mail.ru: логин — полный адрес; нужен пароль для внешних "
                              "приложений.",
        "label.smtp.host": "SMTP хост",
        "label.smtp.port": "SMTP порт",
        "label.smtp.encryption": "Шифрование",
        "label.smtp.verify_certificate": "Проверять сертификат сервера",
        "label.smtp.username": "SMTP логин",
        "label.smtp.password": "SMTP пароль",
        "label.smtp.sender_address": "Адрес отправителя",
        "label.smtp.sender_name": "Имя отправителя",
        "label.notifications.admin_email": "Email админа",
        "label.notifications.enabled": "Использовать оповещения (все письма)",
        "placeholder.sender_address": "пусто: логин",
        "placeholder.missed_call.email": "нет email у сотрудника",
        "placeholder.voicemail.email": "вся голосовая почта",
        "enc.none": "Нет",
        "enc.starttls": "STARTTLS",
        "enc.ssl": "SSL/TLS",
        "password.show": "Показать",
        "password.hide": "Скрыть",
        "button.test": "Тест ^T",
        "button.save": "Сохранить ^S",
        "button.transcript": "Протокол F6",
        "label.connection": "Что будет при отправке",
        "label.test_preview": "Тестовое письмо",
        "connection.to": "подключение к {host}:{port}, {enc}",
        "connection.cert_on": "сертификат сервера проверяется",
        "connection.cert_off": "сертификат НЕ проверяется (только для самоподписанных)",
        "connection.login": "вход как {user}",
        "connection.no_login": "отправка без входа",
        "connection.disabled": "оповещения ВЫКЛЮЧЕНЫ: уходят только тестовые письма",
        "connection.invalid": "сначала исправьте хост и порт",
        "hint.endpoint": "подключение к {host}:{port}, {enc} (из поля хоста)",
        "hint.465": "порт 465 ждёт SSL/TLS с первого байта; с {enc} соединение "
                    "зависнет или оборвётся",
        "hint.587": "порт 587 ждёт STARTTLS; с SSL/TLS рукопожатие не состоится",
        "hint.25": "порт 25 — обычный SMTP; с SSL/TLS рукопожатие не состоится",
        "error.whole_number": "должно быть целым числом",
        "label.missed_call.email": "Общий email",
        "label.voicemail.email": "Единый email",
        "label.subject": "Тема",
        "label.body": "Текст",
        "label.footer": "Подвал",
        "label.parameters": "Параметры (F7, Enter — вставить)",
        "label.preview": "Предпросмотр",
        "preview.from": "От",
        "preview.to": "Кому",
        "preview.subject": "Тема",
        "preview.attachment": "Вложение",
        "preview.nobody": "(никому: адрес не задан)",
        "preview.unknown": "! неизвестный параметр ({part}): {tokens}",
        "part.subject": "тема",
        "part.body": "текст",
        "part.footer": "подвал",
        "save.blocked_title": "Не сохранено",
        "save.blocked": "{key}: {message}",
        "save.more": "(и ещё {n})",
        "save.failed": "Не удалось записать {path}: {error}",
        "save.done": "Сохранено: {path}",
        "save.testing": "Настройки SMTP изменены: отправляю тестовое письмо на {to}",
        "send.blocked": "Не отправлено: {key}: {message}",
        "send.phase": "Тестовое письмо на {to}: {phase}",
        "phase.connect": "подключение…",
        "phase.tls": "TLS…",
        "phase.auth": "вход…",
        "phase.send": "отправка…",
        "phase.done": "готово",
        "send.failed_title": "Тестовое письмо не отправлено: {kind}",
        "send.done_title": "Тестовое письмо отправлено",
        "send.see_transcript": "F6 — протокол отправки.",
        "send.done": "Сервер принял письмо для {to} ({seconds} с)",
        "transcript.title": "Последняя тестовая отправка",
        "transcript.none": "В этом сеансе тестовых писем ещё не было (^T — отправить)",
        "transcript.ok": "Принято для {to}",
        "transcript.failed": "Ошибка: {kind}",
        "transcript.refused": "Отклонены: {who}",
        "transcript.empty": "(протокола нет)",
        "quit.title": "Есть несохранённые изменения",
        "quit.question": "Сохранить изменения перед выходом?",
        "quit.save": "Сохранить",
        "quit.discard": "Не сохранять",
        "quit.cancel": "Отмена",
        "test.title": "Отправить тестовое письмо",
        "test.to": "Кому:",
        "test.send": "Отправить",
        "test.bad_address": "неверный адрес email",
        "outbox.spool": "Очередь",
        "outbox.captured": "Перехвачено песочницей (Enter — открыть)",
        "outbox.empty": "Очередь пуста: все оповещения доставлены.",
        "outbox.unreadable": "Не удаётся прочитать очередь {path}: {error}",
        "outbox.no_captured": "Пока ничего не перехвачено: ^T отправит сюда тестовое письмо.",
        "outbox.col.id": "ID",
        "outbox.col.state": "Статус",
        "outbox.col.kind": "Тип",
        "outbox.col.to": "Кому",
        "outbox.col.attempts": "Поп.",
        "outbox.col.next": "Когда",
        "outbox.col.error": "Ошибка",
        "outbox.col.time": "Время",
        "outbox.col.subject": "Тема",
        "outbox.col.size": "Размер",
        "outbox.queued": "в очереди",
        "outbox.failed": "ошибка",
        "outbox.active": "отправка",
        "kind.missed": "пропущенный",
        "kind.voicemail": "голосовая",
        "kind.system": "системное",
        "kind.alert": "оповещение",
        "kind.test": "тест",
        "outbox.retry_done": "{id} поставлено на отправку",
        "outbox.purge_question": "Удалить {id} ({kind}, кому: {to})? Его можно "
                                 "вернуть в течение 7 дней.",
        "outbox.purge_yes": "Удалить",
        "outbox.purge_done": "Удалено — нажмите u, чтобы вернуть",
        "outbox.restore_done": "{id} возвращено: поставлено на отправку",
        "outbox.nothing_selected": "Сначала выберите оповещение",
        "outbox.error": "{id}: {error}",
        "outbox.sandbox_only": "Не режим песочницы: запустите с --sandbox, чтобы "
                               "перехватывать письма",
        "outbox.now": "сейчас",
        "outbox.in_min": "через {n} мин",
        "outbox.owed": "Ещё не доставлено",
        "outbox.why_failed": "Отказ",
    },
}

# The core's validation messages (config.validate, English) as the Russian UI
# shows them: (pattern, replacement) on the whole message.
_PROBLEMS_RU: tuple[tuple[str, str], ...] = (
    (r"^must not be empty$", "не может быть пустым"),
    (r"^must be 1\.\.65535, got (.+)$", r"должен быть от 1 до 65535, сейчас \1"),
    (r"^port must be 1\.\.65535, got (.+)$", r"порт должен быть от 1 до 65535, сейчас \1"),
    (r"^not a valid email address: (.+)$", r"неверный адрес email: \1"),
    (r"^not a valid host name: (.+)$", r"неверное имя хоста: \1"),
    (r"^not a host name: (.+)$", r"не имя хоста: \1"),
    (r"^unknown scheme (\S+) \(use ssl:// or tls://\)$",
     r"неизвестная схема \1 (используйте ssl:// или tls://)"),
    (r"^must be one line$", "должно быть одной строкой"),
    (r"^unknown parameter (\S+) → did you mean (\S+)\?$",
     r"неизвестный параметр \1 → может быть, \2?"),
    (r"^unknown parameter (\S+)$", r"неизвестный параметр \1"),
    (r"^a password without a username is never used$", "пароль без логина не используется"),
    (r"^login over an unencrypted connection is refused.*$",
     "вход без шифрования запрещён (разрешает allow_insecure_auth = true)"),
    (r"^empty, and the username is not an address to send from$",
     "пусто, а логин не является адресом отправителя"),
    (r"^no sender: set sender_address or username$",
     "нет отправителя: задайте адрес отправителя или логин"),
    (r"^empty: system alerts and test mail have nowhere to go$",
     "пусто: системным оповещениям и тестовым письмам некуда идти"),
    (r"^must be a whole number$", "должно быть целым числом"),
    (r"^empty: the mails will have no subject$", "пусто: у писем не будет темы"),
)


def ui(lang: str, key: str, /, **values: object) -> str:
    """A UI string in `lang` (English when Russian lacks it; the key itself
    when nobody has it, so a missing string shows rather than crashes)."""
    table = UI_STRINGS.get(lang, UI_STRINGS["en"])
    template = table.get(key) or UI_STRINGS["en"].get(key, key)
    return template.format(**values) if values else template


def problem(lang: str, message: str) -> str:
    """A validation message from the core, in the UI language."""
    if lang != "ru":
        return message
    import re

    for pattern, replacement in _PROBLEMS_RU:
        if re.match(pattern, message):
            return re.sub(pattern, replacement, message)
    return message
