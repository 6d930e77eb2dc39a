# English as written in Europe (29 November 2026, 14:05), not Django's American default
# (Nov. 29, 2026, 2:05 p.m.): our subjects and staff are in the EU and the UK.
DATE_FORMAT = "j F Y"
# A moment in a sentence carries its zone ("14:05 CET"): subjects and customers' portals abroad read it too.
DATETIME_FORMAT = "j F Y, H:i T"
SHORT_DATE_FORMAT = "d/m/Y"
SHORT_DATETIME_FORMAT = "d/m/Y H:i"
TIME_FORMAT = "H:i"
# Not one of Django's: a date with its weekday, for the deadlines in staff emails (wording.date_in_words).
WEEKDAY_DATE_FORMAT = "l j F Y"
FIRST_DAY_OF_WEEK = 1  # Monday
