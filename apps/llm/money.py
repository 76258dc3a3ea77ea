"""Money as people read it: the one formatter of US dollar amounts (admin, dashboard, e-mails).

Costs are exact ``Decimal`` values with up to 24 decimal places; shown raw they read
``0.019392000000000000000000``. Everything shown to a person goes through ``usd`` (amounts) or
``usd_precise`` (prices and limits, where the digits matter), which never show more than
``MAX_DIGITS`` significant digits nor exponent notation:

======================  ==============================  ===========================
amount                  rule                            examples
======================  ==============================  ===========================
``None``                no amount                       ``—``
zero                    no decimals                     ``$0``
$1 and more             cents, thousands separated      ``$1,234.57``
$1,000,000 and more     whole dollars (8 digits at      ``$12,345,679``
                        most)
1¢ to $1                four decimals, trailing zeros   ``$0.0194``, ``$0.05``
                        dropped down to cents
below 1¢                four significant digits,        ``$0.000021``, ``$0.0001851``
                        trailing zeros dropped
negative (drifts)       the same, with a minus sign     ``-$0.0012``
======================  ==============================  ===========================

Exports that must stay exact (CSV) do not round: they write
``apps.llm.pricing.sheets.plain_decimal`` (the exact value without trailing zeros). This module
imports nothing of the project, so every layer may use it.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, InvalidOperation

#: Most significant digits any amount is shown with.
MAX_DIGITS = 8
#: Significant digits of amounts under a cent.
SUB_CENT_DIGITS = 4
NONE = "—"

_CENT = Decimal("0.01")
_DOLLAR = Decimal(1)
_MILLION = Decimal(1_000_000)


def round_significant(value: Decimal, digits: int = MAX_DIGITS) -> Decimal:
    """``value`` rounded to ``digits`` significant digits (half up), as an exact ``Decimal``."""
    if not value:
        return Decimal(0)
    exponent = value.adjusted() - digits + 1
    return value.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_HALF_UP)


def _plain(value: Decimal) -> str:
    """Fixed-point text of ``value`` without trailing zeros (never "1E+1" or "0.0100")."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _magnitude(value: Decimal) -> str:
    """The text of a non-negative amount (see the module's table)."""
    if value >= _DOLLAR:
        cents = value.quantize(_CENT, rounding=ROUND_HALF_UP)
        if cents >= _MILLION:
            dollars = round_significant(value.quantize(_DOLLAR, rounding=ROUND_HALF_UP))
            return f"{dollars:,.0f}"
        return f"{cents:,.2f}"
    if value >= _CENT:
        text = _plain(value.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))
        if text == "1":
            return "1.00"
        whole, _, decimals = text.partition(".")
        return f"{whole}.{decimals.ljust(2, '0')}"
    rounded = round_significant(value, SUB_CENT_DIGITS)
    if rounded >= _CENT:  # 0.0099996 rounds up to a cent
        return _magnitude(rounded)
    return _plain(rounded)


def usd(value: Decimal | int | None, *, signed: bool = False) -> str:
    """An amount for people: ``$1,234.57``, ``$0.0194``, ``$0.000021``, ``$0``, ``-$0.0012``.

    ``signed``: positive amounts get a ``+`` (differences, such as a drift).
    """
    if value is None:
        return NONE
    value = Decimal(value)
    if not value:
        return "$0"
    text = _magnitude(abs(value))
    sign = "-" if value < 0 else ("+" if signed else "")
    return f"{sign}${text}"


def usd_precise(value: Decimal | int | None, *, signed: bool = False) -> str:
    """A price or limit: up to ``MAX_DIGITS`` significant digits, no trailing zeros: ``$1.125``, ``$0.00000015``.

    Thousands are separated (``$12,500``); cents are not padded (``$0.5``).
    """
    if value is None:
        return NONE
    value = Decimal(value)
    if not value:
        return "$0"
    text = _plain(round_significant(abs(value)))
    whole, dot, decimals = text.partition(".")
    sign = "-" if value < 0 else ("+" if signed else "")
    return f"{sign}${int(whole):,}{dot}{decimals}"


def percent(value: Decimal | float | None, *, signed: bool = False, places: int = 2) -> str:
    """A fraction as a percentage: ``0.0123`` -> ``1.23%``; ``signed``: ``+1.23%``; tiny non-zero: ``<0.01%``."""
    if value is None:
        return NONE
    hundred = Decimal(str(value)) * 100 if isinstance(value, float) else Decimal(value) * 100
    shown = hundred.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    if hundred and not shown:
        smallest = f"{Decimal(1).scaleb(-places):f}"
        return f"{'-' if hundred < 0 else '+' if signed else ''}<{smallest}%"
    if not shown:
        return f"{abs(shown):.{places}f}%"  # never "-0.00%" nor "+0.00%"
    return f"{shown:+.{places}f}%" if signed else f"{shown:.{places}f}%"


def parse_usd(text: str) -> Decimal:
    """An amount typed by a person: ``1234.5``, ``$1,234.50``, `` $ 0.02 ``; ``ValueError`` if it is not one."""
    cleaned = text.strip().replace(",", "").replace("_", "").replace(" ", "")
    negative = cleaned.startswith("-")
    cleaned = cleaned.removeprefix("-").removeprefix("$")
    if not negative and cleaned.startswith("-"):  # "$-5"
        negative, cleaned = True, cleaned[1:]
    if not cleaned or not all(c.isdigit() or c == "." for c in cleaned) or cleaned.count(".") > 1:
        raise ValueError(f"not an amount of dollars: {text!r}")
    try:
        value = Decimal(cleaned)
    except InvalidOperation as error:  # "." alone
        raise ValueError(f"not an amount of dollars: {text!r}") from error
    return -value if negative else value


def significant_digits(value: Decimal) -> int:
    """How many significant digits ``value`` needs (trailing zeros do not count): 0.019392 -> 5."""
    if not value:
        return 0
    return len(value.normalize().as_tuple().digits)
