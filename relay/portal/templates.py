"""The fixed catalog of invitation wordings. A wording may name only the link and the tenant
(the organization), never the patient, a condition or a clinician, so a tenant chooses from it
rather than writing its own."""

from __future__ import annotations

from relay.errors import InvalidRequest

DEFAULT_TEMPLATE = "standard"

TEMPLATES: dict[str, str] = {
    "standard": "{organization} invites you to share photos securely with your care team: {link}",
    "brief": "{organization}: your secure link {link}",
}

CODE_MESSAGE = "Your {organization} verification code is {code}. It is valid for 10 minutes."
SUBJECT = "A secure link from {organization}"


def require_template(template: str) -> None:
    if template not in TEMPLATES:
        raise InvalidRequest(f"template must be one of {', '.join(sorted(TEMPLATES))}", code="unknown_template")


def render(template: str, *, organization: str, link: str) -> str:
    require_template(template)
    return TEMPLATES[template].format(organization=organization, link=link)


def code_message(*, organization: str, code: str) -> str:
    return CODE_MESSAGE.format(organization=organization, code=code)


def subject(*, organization: str) -> str:
    return SUBJECT.format(organization=organization)
