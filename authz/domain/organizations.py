"""Organization profile values and their validation."""

from dataclasses import dataclass
from typing import Any

from authz.domain.errors import Invalid

# ISO 3166-1 alpha-2 officially assigned codes.
ISO_COUNTRIES = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS
    BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE
    EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM
    HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC
    LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA
    NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW
    SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO
    TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
    """.split()
)

NAME_MAX = 100
_LIMITS = {"line1": 200, "line2": 200, "postal_code": 20, "city": 100}


@dataclass(frozen=True)
class BillingAddress:
    line1: str
    postal_code: str
    city: str
    country: str
    line2: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "line1": self.line1,
            "line2": self.line2,
            "postal_code": self.postal_code,
            "city": self.city,
            "country": self.country,
        }


def _printable(value: str) -> bool:
    return value.isprintable()


def org_name(value: object, field: str = "name") -> str:
    if not isinstance(value, str):
        raise Invalid("name must be a string", field=field)
    trimmed = value.strip()
    if not 1 <= len(trimmed) <= NAME_MAX:
        raise Invalid(f"name must be 1-{NAME_MAX} characters after trimming", field=field)
    if not _printable(trimmed):
        raise Invalid("name must not contain control characters", field=field)
    return trimmed


def _text(data: dict[str, Any], key: str, *, required: bool) -> str | None:
    field = f"billing_address.{key}"
    value = data.get(key)
    if value is None:
        if required:
            raise Invalid(f"{field} is required", field=field)
        return None
    if not isinstance(value, str):
        raise Invalid(f"{field} must be a string", field=field)
    value = value.strip()
    if not value:
        if required:
            raise Invalid(f"{field} must not be empty", field=field)
        return None
    if len(value) > _LIMITS[key]:
        raise Invalid(f"{field} must be at most {_LIMITS[key]} characters", field=field)
    if not _printable(value):
        raise Invalid(f"{field} must not contain control characters", field=field)
    return value


def billing_address(data: object) -> BillingAddress:
    if not isinstance(data, dict):
        raise Invalid("billing_address must be an object", field="billing_address")
    unknown = set(data) - {"line1", "line2", "postal_code", "city", "country"}
    if unknown:
        field = f"billing_address.{sorted(unknown)[0]}"
        raise Invalid(f"{field} is not a billing address field", field=field)
    country = data.get("country")
    if not isinstance(country, str) or country.strip().upper() not in ISO_COUNTRIES:
        raise Invalid(
            "billing_address.country must be an ISO 3166-1 alpha-2 code (e.g. DE, US)", field="billing_address.country"
        )
    return BillingAddress(
        line1=_text(data, "line1", required=True) or "",
        line2=_text(data, "line2", required=False),
        postal_code=_text(data, "postal_code", required=True) or "",
        city=_text(data, "city", required=True) or "",
        country=country.strip().upper(),
    )
