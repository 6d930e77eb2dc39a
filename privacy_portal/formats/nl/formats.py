# Dutch: Django's own formats (django/conf/locale/nl), plus the one of ours they lack and a moment as a sentence writes it.
# Every language in LANGUAGES needs WEEKDAY_DATE_FORMAT: Django reads an unknown format name as the format itself.
WEEKDAY_DATE_FORMAT = "l j F Y"  # dinsdag 15 december 2026
# A moment is written in sentences ("ingetrokken op 1 december 2026 om 14:05"): Dutch puts "om" before the
# hour, where Django's "j F Y H:i" runs the two together ("o" and "m" are format characters, hence escaped).
DATETIME_FORMAT = r"j F Y \o\m H:i T"
