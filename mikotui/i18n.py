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
        "system.subject_prefix": "PBX alert",
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
        "system.subject_prefix": "Оповещение АТС",
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
