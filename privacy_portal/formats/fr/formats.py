# French: Django's own formats (django/conf/locale/fr), plus the one of ours they lack and a moment as a sentence writes it.
# Every language in LANGUAGES needs WEEKDAY_DATE_FORMAT: Django reads an unknown format name as the format itself.
WEEKDAY_DATE_FORMAT = "l j F Y"  # mardi 15 décembre 2026; "1er" is added by wording.date_in_words
# A moment is written in sentences ("retirée le 1er décembre 2026 à 14:05"): French puts "à" before the hour,
# where Django's "j F Y H:i" runs the two together.
DATETIME_FORMAT = "j F Y à H:i T"

