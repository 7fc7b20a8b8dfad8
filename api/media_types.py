"""Which bodies are JSON, by their declared Content-Type."""


def is_json(content_type: str) -> bool:
    """`application/json` or any `application/*+json`, parameters (charset) ignored, in any case."""
    media = content_type.split(";", 1)[0].strip().lower()
    maintype, _, subtype = media.partition("/")
    return maintype == "application" and (subtype == "json" or subtype.endswith("+json"))
