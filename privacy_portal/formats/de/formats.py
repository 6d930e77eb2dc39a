# German: Django's own formats (django/conf/locale/de), plus the one of ours they lack and a moment as a sentence writes it.
# Every language in LANGUAGES needs WEEKDAY_DATE_FORMAT: Django reads an unknown format name as the format itself.
WEEKDAY_DATE_FORMAT = "l, j. F Y"  # Dienstag, 15. Dezember 2026
# A moment is written in sentences ("am 1. Dezember 2026, 14:05 zurückgezogen"): the comma keeps the date and
# the hour apart, where Django's "j. F Y H:i" runs the two together.
DATETIME_FORMAT = "j. F Y, H:i T"
