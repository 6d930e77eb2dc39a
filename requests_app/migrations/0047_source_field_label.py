import django.db.models.deletion
from django.db import migrations, models


def label_from_name(apps, schema_editor):
    """Fields had only their column name, which letters showed: "billing_address" reads "billing address"
    until the DPO words it better."""
    SourceField = apps.get_model("requests_app", "SourceField")
    for field in SourceField.objects.all():
        field.label = field.name.replace("_", " ")
        field.save(update_fields=["label"])


class Migration(migrations.Migration):

    dependencies = [
        ('requests_app', '0046_dry_run_pseudonymised_fields'),
    ]

    operations = [
        migrations.AddField(
            model_name='sourcefield',
            name='label',
            field=models.CharField(default='', help_text='How letters to the subject name this field, for example "billing address".', max_length=100),
            preserve_default=False,
        ),
        migrations.RunPython(label_from_name, migrations.RunPython.noop),
        migrations.CreateModel(
            name='SourceFieldTranslation',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('translated_from', models.JSONField(blank=True, default=dict, editable=False)),
                ('language', models.CharField(choices=[('en', 'English'), ('fr', 'French'), ('nl', 'Dutch'), ('de', 'German')], max_length=8)),
                ('label', models.CharField(max_length=100)),
                ('field', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='translations', to='requests_app.sourcefield')),
            ],
            options={
                'ordering': ['field', 'language'],
                'constraints': [models.UniqueConstraint(fields=('field', 'language'), name='unique_source_field_translation')],
            },
        ),
    ]
