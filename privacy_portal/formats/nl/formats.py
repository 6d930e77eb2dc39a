# Dutch: Django's own formats (django/conf/locale/nl), plus the one of ours they lack.
# Every language in LANGUAGES needs it: Django reads an unknown format name as the format itself.
WEEKDAY_DATE_FORMAT = "l j F Y"  # dinsdag 15 december 2026
