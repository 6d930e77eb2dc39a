"""Fill the demo source systems and register them in the data inventory.

The demo sources live in their own database (DEMO_SOURCES_URL: a SQLite file
by default, a PostgreSQL database when configured), never the app's: a
carrier's customer contacts, website connection logs and call detail records.
The command also creates a verified access request for the first demo
subject and prints its reference as its last line.

    python manage.py seed_demo --subjects 10 --cdrs-per-subject 1000
"""

import datetime
import io
import random

import sqlalchemy
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import ProtectedError
from django.utils import timezone

from requests_app import lifecycle
from requests_app.audit import Actor
from requests_app.models import (
    ConnectorKind,
    DataCategory,
    EraseMethod,
    EraseStrategy,
    ErasureException,
    FieldType,
    IdentityKind,
    LegalBasis,
    LegalHold,
    Recipient,
    RequestType,
    SourceCategory,
    SourceField,
    SourceSystem,
    SubjectIdentity,
    SuppressionPurpose,
    VerificationMethod,
)
from requests_app.sources.sql import normalise_url
from requests_app.services.intake import RightDetails, request_submit, request_verify_email, verification_token

SCHEMA = [
    """CREATE TABLE customers (
        id INTEGER PRIMARY KEY, customer_ref VARCHAR(20) NOT NULL, name VARCHAR(200) NOT NULL,
        email VARCHAR(254) NOT NULL, phone VARCHAR(20) NOT NULL, billing_address VARCHAR(300) NOT NULL,
        company VARCHAR(200) NOT NULL, created_at TIMESTAMP NOT NULL, restricted BOOLEAN NOT NULL DEFAULT FALSE)""",
    "CREATE INDEX customers_email ON customers (email)",
    # Identifiers whose processing is restricted (Art. 18): checked by the billing and web systems.
    "CREATE TABLE processing_restrictions (identity VARCHAR(254) PRIMARY KEY)",
    """CREATE TABLE web_logs (
        id INTEGER PRIMARY KEY, ip_address VARCHAR(45) NOT NULL, visited_at TIMESTAMP NOT NULL,
        browser VARCHAR(100) NOT NULL, device VARCHAR(100) NOT NULL, page VARCHAR(300) NOT NULL)""",
    "CREATE INDEX web_logs_ip ON web_logs (ip_address)",
    """CREATE TABLE cdrs (
        id BIGINT PRIMARY KEY, caller VARCHAR(20) NOT NULL, callee VARCHAR(20) NOT NULL,
        started_at TIMESTAMP NOT NULL, duration_s INTEGER NOT NULL, cell_id VARCHAR(20) NOT NULL,
        location VARCHAR(100) NOT NULL, cost_eur NUMERIC(8, 4) NOT NULL)""",
    "CREATE INDEX cdrs_caller ON cdrs (caller)",
    # A call record concerns both parties: the subject's received calls are searched by the number called.
    "CREATE INDEX cdrs_callee ON cdrs (callee)",
]
# One call in this many of a subject's records is one they received, the rest ones they made.
RECEIVED_EVERY = 4
CITIES = ["Brussels", "Antwerp", "Ghent", "Liège", "Charleroi", "Namur", "Leuven", "Bruges"]
BROWSERS = ["Firefox 132", "Chrome 131", "Safari 18", "Edge 131"]
DEVICES = ["Desktop", "iPhone 15", "Samsung Galaxy S24", "Pixel 9", "iPad"]
PAGES = ["/", "/services/voice", "/services/iot", "/contact", "/careers", "/privacy"]


def translate(item, texts: dict[str, dict[str, str]]) -> None:
    """Give an inventory item's texts in the site's other languages, as a configured installation has them: a
    letter in French, Dutch or German then reads in one language (`texts`: language -> field -> text)."""
    for language, fields in texts.items():
        item.translations.create(language=language, **fields)


def subject(index: int) -> dict:
    return {
        "name": f"Demo Subject {index}",
        "email": f"demo{index}@example.com",
        "phone": f"+3247{index:07d}",
        "customer_ref": f"CUST-{index:06d}",
        "ip": f"198.18.{index // 250}.{index % 250 + 1}",
    }


class Command(BaseCommand):
    help = "Fill the demo source systems, register them in the inventory and create a verified access request."

    def add_arguments(self, parser):
        parser.add_argument("--subjects", type=int, default=10)
        parser.add_argument("--cdrs-per-subject", type=int, default=1000)
        parser.add_argument("--web-logs-per-subject", type=int, default=20)
        parser.add_argument("--database-url", default=None, help="Default: DEMO_SOURCES_URL.")

    def handle(self, *args, subjects, cdrs_per_subject, web_logs_per_subject, database_url, **options):
        if subjects < 1:
            raise CommandError("--subjects must be at least 1")
        url = database_url or settings.DEMO_SOURCES_URL
        engine = sqlalchemy.create_engine(normalise_url(url))
        started = timezone.now()
        self.create_tables(engine)
        self.fill(engine, subjects, cdrs_per_subject, web_logs_per_subject)
        self.stdout.write(
            f"Seeded {subjects} subjects, {subjects * cdrs_per_subject:,} CDRs in "
            f"{(timezone.now() - started).total_seconds():.1f} s into {engine.url.render_as_string(hide_password=True)}"
        )
        self.register_inventory(url)
        request = self.demo_request()
        self.stdout.write(request.reference)

    def create_tables(self, engine):
        with engine.begin() as connection:
            for table in ("cdrs", "web_logs", "customers", "processing_restrictions"):
                connection.execute(sqlalchemy.text(f"DROP TABLE IF EXISTS {table}"))
            for statement in SCHEMA:
                connection.execute(sqlalchemy.text(statement))

    def fill(self, engine, subjects, cdrs_per_subject, web_logs_per_subject):
        rng = random.Random(42)
        now = datetime.datetime(2026, 11, 1, 12, 0)
        customers = [
            (i + 1, s["customer_ref"], s["name"], s["email"], s["phone"], f"Rue de la Loi {i + 1}, 1000 Brussels",
             "Example Telecom SA", now - datetime.timedelta(days=400))
            for i, s in ((i, subject(i)) for i in range(subjects))
        ]
        web_logs = [
            (i * web_logs_per_subject + j + 1, subject(i)["ip"], now - datetime.timedelta(hours=rng.randrange(8760)),
             rng.choice(BROWSERS), rng.choice(DEVICES), rng.choice(PAGES))
            for i in range(subjects)
            for j in range(web_logs_per_subject)
        ]
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text("INSERT INTO customers (id, customer_ref, name, email, phone, billing_address, company, created_at) "
                                               "VALUES (:a, :b, :c, :d, :e, :f, :g, :h)"),
                               [dict(zip("abcdefgh", row)) for row in customers])
            connection.execute(sqlalchemy.text("INSERT INTO web_logs VALUES (:a, :b, :c, :d, :e, :f)"),
                               [dict(zip("abcdef", row)) for row in web_logs])

        def cdr_rows():
            row_id = 0
            for i in range(subjects):
                phone = subject(i)["phone"]
                for j in range(cdrs_per_subject):
                    row_id += 1
                    other = f"+32{rng.randrange(10**8, 10**9)}"
                    # The second of every RECEIVED_EVERY records is a call to the subject: from two records on,
                    # a subject's package has calls in both directions.
                    caller, callee = (other, phone) if j % RECEIVED_EVERY == 1 else (phone, other)
                    yield (row_id, caller, callee,
                           now - datetime.timedelta(seconds=rng.randrange(31_536_000)), rng.randrange(1, 3600),
                           f"BE-{rng.randrange(1, 9999):04d}", rng.choice(CITIES), f"{rng.randrange(0, 500000) / 10000:.4f}")

        if engine.dialect.name == "postgresql":
            self.copy_cdrs(engine, cdr_rows())
        else:
            self.insert_cdrs(engine, cdr_rows())

    def copy_cdrs(self, engine, rows):
        """COPY in chunks: a million rows in seconds, in bounded memory."""
        raw = engine.raw_connection()
        try:
            with raw.cursor() as cursor:
                while True:
                    buffer = io.StringIO()
                    count = 0
                    for row in rows:
                        buffer.write("\t".join(str(value) for value in row) + "\n")
                        count += 1
                        if count == 100_000:
                            break
                    if not count:
                        break
                    buffer.seek(0)
                    cursor.copy_expert("COPY cdrs FROM STDIN", buffer)
            raw.commit()
        finally:
            raw.close()

    def insert_cdrs(self, engine, rows):
        insert = sqlalchemy.text("INSERT INTO cdrs VALUES (:a, :b, :c, :d, :e, :f, :g, :h)")
        with engine.begin() as connection:
            batch = []
            for row in rows:
                batch.append(dict(zip("abcdefgh", row)))
                if len(batch) == 50_000:
                    connection.execute(insert, batch)
                    batch = []
            if batch:
                connection.execute(insert, batch)

    @transaction.atomic
    def register_inventory(self, url):
        """The three demo systems as the carrier's record of processing describes them, with how
        erasure, rectification and restriction reach them, the legal hold on call records and the
        suppression lists of the privacy policy's opt-outs; the texts subjects read, in each site language.
        French puts a no-break space (U+00A0) before ";"."""
        try:
            SourceSystem.objects.filter(slug__in=["crm", "weblogs", "cdr"]).delete()
        except ProtectedError as error:
            raise CommandError(
                "The demo inventory has recorded erasures or rectifications: seed into a fresh database."
            ) from error
        crm = SourceSystem.objects.create(
            slug="crm", name="Customer contacts (CRM)", connector=ConnectorKind.SQL, connection_url=url,
            identity_kind=IdentityKind.EMAIL, legal_basis=LegalBasis.CONTRACT,
            purposes="Managing the contract with business customers and their contacts; billing; customer support.",
            retention="For the duration of the contract, then 7 years for accounting obligations.",
            origin="Given by you or by your employer when the account was opened.",
        )
        translate(crm, {
            "fr": {
                "name": "Contacts clients (CRM)",
                "purposes": "Gestion du contrat avec nos clients professionnels et leurs interlocuteurs\u00a0; facturation\u00a0; "
                "assistance à la clientèle.",
                "retention": "Pendant la durée du contrat, puis 7 ans pour satisfaire à nos obligations comptables.",
                "origin": "Communiquées par vous-même ou par votre employeur lors de l’ouverture du compte.",
            },
            "nl": {
                "name": "Klantcontacten (CRM)",
                "purposes": "Beheer van het contract met zakelijke klanten en hun contactpersonen; facturatie; klantenondersteuning.",
                "retention": "Zolang het contract loopt, daarna 7 jaar om aan onze boekhoudkundige verplichtingen te voldoen.",
                "origin": "Verstrekt door uzelf of door uw werkgever bij de opening van het account.",
            },
            "de": {
                "name": "Kundenkontakte (CRM)",
                "purposes": "Verwaltung des Vertrags mit Geschäftskunden und deren Ansprechpartnern; Rechnungsstellung; Kundenbetreuung.",
                "retention": "Für die Dauer des Vertrags, danach 7 Jahre zur Erfüllung unserer Buchführungspflichten.",
                "origin": "Von Ihnen selbst oder von Ihrem Arbeitgeber bei der Eröffnung des Kontos angegeben.",
            },
        })
        contacts = SourceCategory.objects.create(
            source=crm, slug="contacts", category=DataCategory.CONTACT,
            query="SELECT customer_ref, name, email, phone, billing_address, company, created_at FROM customers WHERE lower(email) IN :identities",
            table="customers", identity_field="email", erase_method=EraseMethod.ANONYMISE, restriction_flag="restricted",
        )
        # The account row stays (accounting law keeps the invoices that point at it); the person in it goes: every field
        # that is about the contact is erased for good. Not replaced by a keyed hash: a code we could match to them
        # again is their data kept, which only a legal hold on the codes may justify, and nothing here needs one.
        # The customer reference goes too: it is the account's unique identifier, by which we verify a subject
        # (account records) and may search a source, so it would still single the contact out (Recital 26). What stays,
        # the company (and when the account was opened), the letter names as kept. Letters name a field inside a
        # sentence: in lower case, but for German nouns.
        for field, labels in [
            (SourceField(name="name", label="name", erase_strategy=EraseStrategy.FIXED, fixed_text="(erased)"),
             {"fr": "nom", "nl": "naam", "de": "Name"}),
            (SourceField(name="email", label="email address", type=FieldType.EMAIL, erase_strategy=EraseStrategy.FIXED, fixed_text="(erased)"),
             {"fr": "adresse e-mail", "nl": "e-mailadres", "de": "E-Mail-Adresse"}),
            (SourceField(name="phone", label="phone number", type=FieldType.PHONE, erase_strategy=EraseStrategy.FIXED, fixed_text="(erased)"),
             {"fr": "numéro de téléphone", "nl": "telefoonnummer", "de": "Telefonnummer"}),
            (SourceField(name="billing_address", label="billing address", erase_strategy=EraseStrategy.FIXED, fixed_text="(erased)"),
             {"fr": "adresse de facturation", "nl": "factuuradres", "de": "Rechnungsanschrift"}),
            (SourceField(name="company", label="company", erase_strategy=EraseStrategy.KEEP, rectifiable=True),
             {"fr": "entreprise", "nl": "bedrijf", "de": "Unternehmen"}),
            # Replaced, not emptied: the column may not be NULL.
            (SourceField(name="customer_ref", label="customer reference", erase_strategy=EraseStrategy.FIXED, fixed_text="(erased)",
                         rectifiable=False),
             {"fr": "référence client", "nl": "klantreferentie", "de": "Kundennummer"}),
        ]:
            field.category = contacts
            field.save()
            translate(field, {language: {"label": label} for language, label in labels.items()})
        group = Recipient.objects.create(source=crm, name="Group companies", country="Belgium", notification_email="privacy@group.example")
        translate(group, {
            "fr": {"name": "Sociétés du groupe", "country": "Belgique"},
            "nl": {"name": "Groepsmaatschappijen", "country": "België"},
            "de": {"name": "Konzerngesellschaften", "country": "Belgien"},
        })
        weblogs = SourceSystem.objects.create(
            slug="weblogs", name="Website connection logs", connector=ConnectorKind.SQL, connection_url=url,
            identity_kind=IdentityKind.IP_ADDRESS, legal_basis=LegalBasis.LEGITIMATE_INTERESTS,
            purposes="Operating and securing our website; audience statistics.",
            retention="13 months.", origin="Collected automatically when you visit our website.",
            restriction_list="processing_restrictions.identity",
        )
        translate(weblogs, {
            "fr": {
                "name": "Journaux de connexion au site web",
                "purposes": "Exploitation et sécurisation de notre site web\u00a0; statistiques d’audience.",
                "retention": "13 mois.", "origin": "Collectées automatiquement lors de vos visites sur notre site web.",
            },
            "nl": {
                "name": "Verbindingslogboeken van de website",
                "purposes": "Exploitatie en beveiliging van onze website; bezoekersstatistieken.",
                "retention": "13 maanden.", "origin": "Automatisch verzameld wanneer u onze website bezoekt.",
            },
            "de": {
                "name": "Verbindungsprotokolle der Website",
                "purposes": "Betrieb und Absicherung unserer Website; Besucherstatistiken.",
                "retention": "13 Monate.", "origin": "Automatisch erhoben, wenn Sie unsere Website besuchen.",
            },
        })
        SourceCategory.objects.create(
            source=weblogs, slug="visits", category=DataCategory.WEBSITE_CONNECTION,
            query="SELECT ip_address, visited_at, browser, device, page FROM web_logs WHERE ip_address IN :identities ORDER BY visited_at",
            table="web_logs", identity_field="ip_address", erase_method=EraseMethod.DELETE,
        )
        analytics = Recipient.objects.create(
            source=weblogs, name="Web analytics provider", country="United States", third_country=True,
            safeguards="EU standard contractual clauses (Commission Decision 2021/914)",
            notification_email="dpo@analytics.example",
        )
        translate(analytics, {
            "fr": {
                "name": "Prestataire de mesure d’audience", "country": "États-Unis",
                "safeguards": "Clauses contractuelles types de l’UE (décision d’exécution (UE) 2021/914 de la Commission)",
            },
            "nl": {
                "name": "Aanbieder van webanalyse", "country": "Verenigde Staten",
                "safeguards": "Modelcontractbepalingen van de EU (Uitvoeringsbesluit (EU) 2021/914 van de Commissie)",
            },
            "de": {
                "name": "Anbieter von Webanalysediensten", "country": "Vereinigte Staaten",
                "safeguards": "EU-Standardvertragsklauseln (Durchführungsbeschluss (EU) 2021/914 der Kommission)",
            },
        })
        cdr = SourceSystem.objects.create(
            slug="cdr", name="Call detail records", connector=ConnectorKind.SQL, connection_url=url,
            identity_kind=IdentityKind.PHONE, legal_basis=LegalBasis.LEGAL_OBLIGATION,
            purposes="Routing and billing calls; settling accounts with other operators; fraud prevention; "
            "retention required by electronic communications law.",
            retention="12 months for billing disputes; longer where telecom law requires it.",
            origin="Generated by the networks that carried your calls, including the operator you subscribe to.",
            restriction_list="processing_restrictions.identity",
            # Said here and not as a recipient: an authority that receives data for a particular inquiry is no
            # recipient in the GDPR's sense (Art. 4(9)), nor one an erasure or a restriction is notified to (Art. 19).
            description="The calls you made and the calls you received. When the law obliges us to, we disclose call "
            "records to public authorities for a specific inquiry; where the law allows, we try to let you know.",
        )
        translate(cdr, {
            "fr": {
                "name": "Enregistrements détaillés des appels",
                "description": "Les appels que vous avez passés et ceux que vous avez reçus. Lorsque la loi nous y oblige, "
                "nous communiquons des données d’appel aux autorités publiques dans le cadre d’une enquête précise\u00a0; "
                "lorsque la loi le permet, nous nous efforçons de vous en informer.",
                "purposes": "Acheminement et facturation des appels\u00a0; règlement des comptes avec les autres opérateurs\u00a0; "
                "prévention de la fraude\u00a0; conservation imposée par la législation sur les communications électroniques.",
                "retention": "12 mois pour le traitement des contestations de facturation\u00a0; plus longtemps lorsque la "
                "législation sur les télécommunications l’impose.",
                "origin": "Générées par les réseaux qui ont acheminé vos appels, y compris celui de l’opérateur auprès duquel "
                "vous êtes abonné.",
            },
            "nl": {
                "name": "Gespreksdetailgegevens",
                "description": "De oproepen die u hebt gedaan en de oproepen die u hebt ontvangen. Wanneer de wet ons daartoe "
                "verplicht, verstrekken wij oproepgegevens aan overheidsinstanties voor een specifiek onderzoek; voor zover de "
                "wet het toelaat, proberen wij u daarvan op de hoogte te brengen.",
                "purposes": "Routering en facturatie van oproepen; verrekening met andere operatoren; fraudepreventie; bewaring "
                "die de wetgeving inzake elektronische communicatie oplegt.",
                "retention": "12 maanden voor de behandeling van betwiste facturen; langer wanneer de telecomwetgeving dat vereist.",
                "origin": "Gegenereerd door de netwerken die uw oproepen hebben doorgegeven, waaronder dat van de operator bij "
                "wie u geabonneerd bent.",
            },
            "de": {
                "name": "Verbindungsdatensätze",
                "description": "Die Anrufe, die Sie getätigt, und die Anrufe, die Sie erhalten haben. Wenn das Gesetz uns dazu "
                "verpflichtet, übermitteln wir Verbindungsdaten für ein bestimmtes Ermittlungsverfahren an Behörden; soweit das "
                "Gesetz es erlaubt, bemühen wir uns, Sie darüber zu informieren.",
                "purposes": "Vermittlung und Abrechnung von Anrufen; Verrechnung mit anderen Netzbetreibern; Betrugsprävention; "
                "gesetzlich vorgeschriebene Speicherung nach dem Recht der elektronischen Kommunikation.",
                "retention": "12 Monate für Rechnungsbeanstandungen; länger, wenn das Telekommunikationsrecht es vorschreibt.",
                "origin": "Von den Netzen erzeugt, über die Ihre Anrufe geführt wurden, einschließlich des Netzes des Betreibers, "
                "bei dem Sie Ihren Anschluss haben.",
            },
        })
        # A call record is personal data of both parties: the subject's calls are those they made and those they
        # received, each with the other party's number masked (Art. 15(4)). Two categories, as the connector
        # masks a column by its name and acts on the rows of one identity column.
        calls_made = SourceCategory.objects.create(
            source=cdr, slug="calls-made", category=DataCategory.ELECTRONIC_COMMUNICATIONS, masked_fields="callee",
            description="Calls you made; the number you called is masked.",
            query="SELECT caller, callee, started_at, duration_s, cell_id, location, cost_eur FROM cdrs WHERE caller IN :identities ORDER BY id",
            table="cdrs", identity_field="caller", erase_method=EraseMethod.DELETE,
        )
        translate(calls_made, {
            "fr": {"description": "Appels que vous avez passés\u00a0; le numéro appelé est masqué."},
            "nl": {"description": "Oproepen die u hebt gedaan; het gebelde nummer is afgeschermd."},
            "de": {"description": "Anrufe, die Sie getätigt haben; die angerufene Nummer ist unkenntlich gemacht."},
        })
        # The cell, the place and the cost of a call are the caller's: a received call shows neither.
        calls_received = SourceCategory.objects.create(
            source=cdr, slug="calls-received", category=DataCategory.ELECTRONIC_COMMUNICATIONS, masked_fields="caller",
            description="Calls you received; the caller's number is masked, and where the call was made from and its "
            "cost, which concern the caller, are left out.",
            query="SELECT caller, callee, started_at, duration_s FROM cdrs WHERE callee IN :identities ORDER BY id",
            table="cdrs", identity_field="callee", erase_method=EraseMethod.DELETE,
        )
        translate(calls_received, {
            "fr": {"description": "Appels que vous avez reçus\u00a0; le numéro de l’appelant est masqué, et le lieu d’où "
                   "l’appel a été passé ainsi que son coût, qui concernent l’appelant, ne sont pas repris."},
            "nl": {"description": "Oproepen die u hebt ontvangen; het nummer van de beller is afgeschermd, en de plaats "
                   "van waaruit werd gebeld en de kosten van de oproep, die de beller betreffen, zijn weggelaten."},
            "de": {"description": "Anrufe, die Sie erhalten haben; die Nummer des Anrufers ist unkenntlich gemacht, und "
                   "der Ort, von dem aus angerufen wurde, sowie die Kosten des Anrufs, die den Anrufer betreffen, sind "
                   "nicht enthalten."},
        })
        # A standing duty: each call record, made or received, is kept for 12 months from its call, and older ones
        # are erased. A rolling hold names one category: one hold for each.
        for calls in (calls_made, calls_received):
            hold = LegalHold.objects.create(
                source=cdr, category=calls, ground=ErasureException.LEGAL_OBLIGATION, keep_months=12, dated_by="started_at",
                until=timezone.localdate() + datetime.timedelta(days=10 * 365),
                basis="Belgian electronic communications law requires operators to keep call records for 12 months, "
                "and settling disputed invoices with other operators needs them for as long.",
            )
            translate(hold, {
                "fr": {"basis": "La législation belge sur les communications électroniques impose aux opérateurs de conserver les "
                       "données d’appel pendant 12 mois, et le règlement des factures contestées avec les autres opérateurs "
                       "requiert de les conserver aussi longtemps."},
                "nl": {"basis": "De Belgische wetgeving inzake elektronische communicatie verplicht operatoren om oproepgegevens "
                       "12 maanden te bewaren, en de afhandeling van betwiste facturen met andere operatoren vereist ze even lang."},
                "de": {"basis": "Das belgische Recht der elektronischen Kommunikation verpflichtet Betreiber, Verbindungsdaten "
                       "12 Monate lang aufzubewahren, und die Klärung strittiger Rechnungen mit anderen Betreibern erfordert sie "
                       "ebenso lange."},
            })
        for slug, name, kinds, names in [
            ("marketing-email", "Promotional emails and newsletters", ["email"], {
                "fr": "E-mails promotionnels et lettres d’information",
                "nl": "Promotionele e-mails en nieuwsbrieven",
                "de": "Werbe-E-Mails und Newsletter",
            }),
            ("telemarketing", "Telemarketing calls", ["phone"], {
                "fr": "Démarchage téléphonique", "nl": "Telemarketingoproepen", "de": "Werbeanrufe",
            }),
            ("event-sponsors", "Event partners and conference sponsors contacting you", ["email", "phone"], {
                "fr": "Sollicitations de nos partenaires d’événements et des sponsors de conférences",
                "nl": "Contact door evenementpartners en sponsors van conferenties",
                "de": "Kontaktaufnahme durch Veranstaltungspartner und Konferenzsponsoren",
            }),
        ]:
            # Kept from an earlier seeding, with their entries (they are never deleted): so are names given since.
            purpose, _created = SuppressionPurpose.objects.get_or_create(slug=slug, defaults={"name": name, "identity_kinds": kinds})
            for language, translated in names.items():
                purpose.translations.get_or_create(language=language, defaults={"name": translated})
        operators = Recipient.objects.create(
            source=cdr, name="Interconnected network operators", country="EU/EEA and worldwide", third_country=True,
            safeguards="EU standard contractual clauses", notification_email="privacy-desk@interconnect.example",
        )
        translate(operators, {
            "fr": {
                "name": "Opérateurs de réseaux interconnectés", "country": "UE/EEE et monde entier",
                "safeguards": "Clauses contractuelles types de l’UE",
            },
            "nl": {
                "name": "Operatoren van geïnterconnecteerde netwerken", "country": "EU/EER en wereldwijd",
                "safeguards": "Modelcontractbepalingen van de EU",
            },
            "de": {
                "name": "Betreiber zusammengeschalteter Netze", "country": "EU/EWR und weltweit",
                "safeguards": "EU-Standardvertragsklauseln",
            },
        })

    @transaction.atomic
    def demo_request(self):
        """A verified access request for subject 0, its identities checked and work started."""
        details = subject(0)
        request = request_submit(
            rights=[RightDetails(RequestType.ACCESS)], subject_name=details["name"], subject_email=details["email"],
            subject_phone=details["phone"], customer_reference=details["customer_ref"], ip_address=details["ip"],
            relationship="end_user", signature=details["name"], regime="gdpr", language="en", actor=Actor.subject(),
        )
        request = request_verify_email(token=verification_token(request))
        SubjectIdentity.objects.filter(request=request, verified_at__isnull=True).update(
            verified_at=timezone.now(), verification_method=VerificationMethod.ACCOUNT_RECORDS
        )
        lifecycle.transition(request, "start_work", actor=Actor.system(), note="Demo: identity matched against account records")
        return request
