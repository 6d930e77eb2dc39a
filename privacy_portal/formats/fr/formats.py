# French: Django's own formats (django/conf/locale/fr), plus the one of ours they lack.
# Every language in LANGUAGES needs it: Django reads an unknown format name as the format itself.
WEEKDAY_DATE_FORMAT = "l j F Y"  # mardi 15 décembre 2026; "1er" is added by wording.date_in_words
