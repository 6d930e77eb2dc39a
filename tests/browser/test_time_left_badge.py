"""The time-left badge's colours (due.css) are readable in the admin's dark theme as in its light one (WCAG 1.4.3)."""

from pathlib import Path

import pytest

import requests_app

DUE_CSS = (Path(requests_app.__file__).parent / "static" / "requests_app" / "due.css").read_text()
BADGES = ["due-overdue", "due-urgent", "due-soon", "due-ok", "due-none"]
DARK_ROWS = ["#121212", "#212121", "#00363a"]  # the admin's dark rows, every other one, a selected one
LIGHT_ROWS = ["#ffffff", "#f8f8f8", "#ffffcc"]  # the same in the light theme, and the staff pages'


def luminance(rgb: tuple[int, int, int]) -> float:
    linear = [c / 255 / 12.92 if c / 255 <= 0.04045 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(one: tuple[int, int, int], other: tuple[int, int, int]) -> float:
    darker, lighter = sorted([luminance(one), luminance(other)])
    return (lighter + 0.05) / (darker + 0.05)


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def badge_colours(page, theme: str | None) -> dict[str, tuple[int, int, int]]:
    """Each badge's colour as Chromium computes it, on a page with the admin's theme attribute (none: a staff page)."""
    attribute = f' data-theme="{theme}"' if theme else ""
    badges = "".join(f'<span class="due {badge}">3 days left</span>' for badge in BADGES)
    page.set_content(f"<!DOCTYPE html><html{attribute}><head><style>{DUE_CSS}</style></head><body>{badges}</body></html>")
    colours = page.evaluate("[...document.querySelectorAll('.due')].map(b => getComputedStyle(b).color.match(/\\d+/g).map(Number))")
    return {badge: tuple(colour) for badge, colour in zip(BADGES, colours)}


@pytest.mark.parametrize(
    "system, theme, rows",
    [
        ("dark", "dark", DARK_ROWS),  # chosen with the admin's theme button
        ("light", "dark", DARK_ROWS),
        ("dark", "auto", DARK_ROWS),  # the admin's default follows the system
        ("light", "auto", LIGHT_ROWS),
        ("dark", "light", LIGHT_ROWS),
        ("dark", None, LIGHT_ROWS),  # the staff pages have no dark theme
    ],
)
def test_the_time_left_badge_stands_out_from_the_admins_rows_in_either_theme(page, system, theme, rows):
    """On the dark rows the light theme's colours were as low as 2.55:1 (overdue, #b00020 on #121212); "urgent" was
    4.32:1 on the light theme's every other row."""
    page.emulate_media(color_scheme=system)
    colours = badge_colours(page, theme)
    too_faint = {
        (badge, row): round(contrast(colour, hex_rgb(row)), 2)
        for badge, colour in colours.items()
        for row in rows
        if contrast(colour, hex_rgb(row)) < 4.5
    }
    assert not too_faint
