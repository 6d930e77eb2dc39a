from django import template

from requests_app.wording import in_sentence

register = template.Library()
register.filter("in_sentence", in_sentence)
