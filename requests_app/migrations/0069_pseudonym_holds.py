"""A legal hold may keep only the codes (keyed hashes) erasure writes in place of fields: the Art. 17(3) ground an
erasure now needs before it writes one (a pseudonym is the subject's data, kept). Existing holds keep records, as
before; a field already set to a keyed hash has its erasure's dry run refused until such a hold is added or the field
is emptied or replaced by a fixed text instead."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('requests_app', '0068_request_created_claimed_per_endpoint'),
    ]

    operations = [
        migrations.AddField(
            model_name='legalhold',
            name='pseudonyms_only',
            field=models.BooleanField(default=False, help_text='Keep only the codes (keyed hashes) that erasure writes in place of the fields set to be replaced by a keyed hash; the rest of the data is erased.'),
        ),
        migrations.AlterField(
            model_name='sourcefield',
            name='erase_strategy',
            field=models.CharField(choices=[('keep', 'Keep (not personal once the rest is anonymised)'), ('null', 'Empty it (NULL)'), ('fixed', 'Replace with a fixed text'), ('hash', 'Replace with a keyed hash (a pseudonym: kept only under a legal hold on the codes)')], default='keep', max_length=8),
        ),
        migrations.AddConstraint(
            model_name='legalhold',
            constraint=models.CheckConstraint(condition=models.Q(('pseudonyms_only', False), ('keep_months__isnull', True), _connector='OR'), name='pseudonym_hold_keeps_no_records', violation_error_message='A hold on the codes keeps no records: leave the number of months empty.'),
        ),
    ]
