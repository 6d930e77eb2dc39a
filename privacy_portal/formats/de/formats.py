# German: Django's own formats (django/conf/locale/de), plus the one of ours they lack.
# Every language in LANGUAGES needs it: Django reads an unknown format name as the format itself.
WEEKDAY_DATE_FORMAT = "l, j. F Y"  # Dienstag, 15. Dezember 2026
