"""The request record, the subject's identities, attachments and the audit trail.

The status field is changed only by `requests_app.lifecycle.transition`; the
audit trail is written only by `requests_app.audit.record_event`.
"""

import datetime
import hashlib
import secrets
import unicodedata
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models.lookups import GreaterThan
from django.db.models.functions import Upper
from django.utils import timezone
from django.utils.text import format_lazy
from rest_framework_api_key.models import AbstractAPIKey
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext, pgettext_lazy

from requests_app.deadlines import add_months
from requests_app.phones import to_e164


class Status(models.TextChoices):
    AWAITING_VERIFICATION = "awaiting_verification", _("Awaiting email verification")
    NEW = "new", _("New")
    IDENTITY_CHECK = "identity_check", _("Identity check")
    IN_PROGRESS = "in_progress", _("In progress")
    AWAITING_SUBJECT = "awaiting_subject", _("Awaiting the subject")
    COMPLETED = "completed", _("Completed")
    REJECTED = "rejected", _("Rejected")
    WITHDRAWN = "withdrawn", _("Withdrawn")
    EXPIRED = "expired", _("Expired")
    # The carrier processes the data for a customer, the controller, which must answer: the request was passed on
    # to it (handling.request_forward). Not a refusal: nobody decided against the subject.
    FORWARDED = "forwarded", _("Forwarded to the controller")


class RequestType(models.TextChoices):
    ACCESS = "access", _("Access a copy of my data")
    RECTIFICATION = "rectification", _("Correct or complete my data")
    ERASURE = "erasure", _("Erase my data")
    RESTRICTION = "restriction", _("Restrict the processing of my data")
    PORTABILITY = "portability", _("Receive my data in a machine-readable format")
    OBJECTION = "objection", _("Object to the processing of my data")
    WITHDRAW_CONSENT = "withdraw_consent", _("Withdraw my consent")
    LIMIT_USE = "limit_use", _("Limit the use and disclosure of my data")


class Regime(models.TextChoices):
    GDPR = "gdpr", _("GDPR (European Union and EEA)")
    UK_GDPR = "uk_gdpr", _("UK GDPR (United Kingdom)")
    CCPA = "ccpa", _("CCPA/CPRA (California)")
    LGPD = "lgpd", _("LGPD (Brazil)")


class Channel(models.TextChoices):
    WEB = "web", _("Web form")
    EMAIL = "email", _("Email")
    POST = "post", _("Post")
    PHONE = "phone", _("Phone")
    API = "api", _("API")


class Relationship(models.TextChoices):
    END_USER = "end_user", _("End user of one of our customers' services")
    BUSINESS_CONTACT = "business_contact", _("Contact at a business customer")
    WEBSITE_VISITOR = "website_visitor", _("Website visitor")
    NEWSLETTER_SUBSCRIBER = "newsletter_subscriber", _("Newsletter subscriber")
    JOB_APPLICANT = "job_applicant", _("Job applicant")
    EVENT_ATTENDEE = "event_attendee", _("Event attendee")
    SUPPLIER = "supplier", _("Supplier")
    OTHER = "other", _("Other")


class RestrictionGround(models.TextChoices):
    """The four grounds of GDPR Art. 18(1)."""

    ACCURACY_CONTESTED = "accuracy_contested", _("I contest the accuracy of my data (Art. 18(1)(a))")
    UNLAWFUL_PROCESSING = "unlawful_processing", _(
        "The processing is unlawful and I want it restricted rather than erased (Art. 18(1)(b))"
    )
    NEEDED_FOR_LEGAL_CLAIMS = "needed_for_legal_claims", _(
        "You no longer need the data but I need it for a legal claim (Art. 18(1)(c))"
    )
    OBJECTION_PENDING = "objection_pending", _(
        "I have objected and the balancing of interests is pending (Art. 18(1)(d))"
    )


# The rights and restriction grounds as staff read and record them, of the subject: the choices' own labels are
# the subject's words ("my data"), as the public form and the subject's status page offer them, which read as
# quotes in staff's hands.
RIGHTS_THE_SUBJECT_ASKS = {
    RequestType.ACCESS: _("Access a copy of their data"),
    RequestType.RECTIFICATION: _("Correct or complete their data"),
    RequestType.ERASURE: _("Erase their data"),
    RequestType.RESTRICTION: _("Restrict the processing of their data"),
    RequestType.PORTABILITY: _("Receive their data in a machine-readable format"),
    RequestType.OBJECTION: _("Object to the processing of their data"),
    RequestType.WITHDRAW_CONSENT: _("Withdraw their consent"),
    RequestType.LIMIT_USE: _("Limit the use and disclosure of their data"),
}
RESTRICTION_GROUNDS_THE_SUBJECT_GIVES = {
    RestrictionGround.ACCURACY_CONTESTED: _("The subject contests the accuracy of their data (Art. 18(1)(a))"),
    RestrictionGround.UNLAWFUL_PROCESSING: _(
        "The processing is unlawful and the subject wants it restricted rather than erased (Art. 18(1)(b))"
    ),
    RestrictionGround.NEEDED_FOR_LEGAL_CLAIMS: _(
        "We no longer need the data but the subject needs it for a legal claim (Art. 18(1)(c))"
    ),
    RestrictionGround.OBJECTION_PENDING: _("The subject has objected and the balancing of interests is pending (Art. 18(1)(d))"),
}
# The grounds as the public form offers them to someone acting for the subject, and as the status page reads the one
# they chose back to them: of the person they act for (the rights are RIGHTS_THE_SUBJECT_ASKS).
RESTRICTION_GROUNDS_TO_AN_AGENT = {
    RestrictionGround.ACCURACY_CONTESTED: _(
        "The person you are acting for contests the accuracy of their data (Art. 18(1)(a))"
    ),
    RestrictionGround.UNLAWFUL_PROCESSING: _(
        "The processing is unlawful and the person you are acting for wants it restricted rather than erased "
        "(Art. 18(1)(b))"
    ),
    RestrictionGround.NEEDED_FOR_LEGAL_CLAIMS: _(
        "We no longer need the data but the person you are acting for needs it for a legal claim (Art. 18(1)(c))"
    ),
    RestrictionGround.OBJECTION_PENDING: _(
        "The person you are acting for has objected and the balancing of interests is pending (Art. 18(1)(d))"
    ),
}


class IdentityKind(models.TextChoices):
    EMAIL = "email", _("Email address")
    PHONE = "phone", _("Phone number")
    CUSTOMER_REFERENCE = "customer_reference", _("Customer account reference")
    IP_ADDRESS = "ip_address", _("IP address")


class VerificationMethod(models.TextChoices):
    EMAIL_LINK = "email_link", _("Link sent to the email address")
    DOCUMENT = "document", _("Identity document checked by staff")
    CALLBACK = "callback", _("Call-back to the phone number")
    ACCOUNT_RECORDS = "account_records", _("Matched against account records")
    ASSERTED_BY_ORGANISATION = "asserted_by_organisation", _("Asserted by the customer organisation")


# The methods that tie a phone number to the subject's own line: a call-back reached them on it, the account
# records list it as their line, or the organisation asserted it as its subscriber's. Only a number verified so
# may receive an encrypted package's password: an identity document proves who the person is, not that the
# number reaches them, and a password texted to someone else's phone opens the subject's data.
LINE_PROVING_METHODS = (
    VerificationMethod.CALLBACK,
    VerificationMethod.ACCOUNT_RECORDS,
    VerificationMethod.ASSERTED_BY_ORGANISATION,
)

# The methods that prove an identifier of each kind is the subject's own, and so may be searched for in the source
# systems (the package, the erasure, correction and restriction, the Art. 19 notices). Proving who the person is
# is not enough: whoever files with another person's phone number, and their own ID, would otherwise be sent that
# person's call records. So an identity document proves only the email address, the request's own: whatever we
# answer goes to that mailbox, and a request received directly releases no unencrypted package until the
# address's owner confirms it (PrivacyRequest.email_unconfirmed); not on an agent's request (proving_methods).
# A phone number takes what proves a line (LINE_PROVING_METHODS); an IP address or a customer reference, the account records staff matched it to (or the
# organisation's word, its subscriber's). A call-back proves a line, not a mailbox, an address or an account.
IDENTITY_PROVING_METHODS = {
    IdentityKind.EMAIL: (
        VerificationMethod.EMAIL_LINK,
        VerificationMethod.DOCUMENT,
        VerificationMethod.ACCOUNT_RECORDS,
        VerificationMethod.ASSERTED_BY_ORGANISATION,
    ),
    IdentityKind.PHONE: LINE_PROVING_METHODS,
    IdentityKind.CUSTOMER_REFERENCE: (VerificationMethod.ACCOUNT_RECORDS, VerificationMethod.ASSERTED_BY_ORGANISATION),
    IdentityKind.IP_ADDRESS: (VerificationMethod.ACCOUNT_RECORDS, VerificationMethod.ASSERTED_BY_ORGANISATION),
}


def proving_methods(kind: str, *, filed_by_agent: bool) -> tuple[str, ...]:
    """The methods that prove an identifier of `kind` is the subject's (IDENTITY_PROVING_METHODS). On a request an
    agent filed, an identity document no longer proves the email address: what we answer goes to the agent, so the
    subject's address is one more identifier the agent typed, and someone with a look-alike ID would be sent the
    data of whoever owns it."""
    methods = IDENTITY_PROVING_METHODS[kind]
    if filed_by_agent and kind == IdentityKind.EMAIL:
        return tuple(method for method in methods if method != VerificationMethod.DOCUMENT)
    return methods


def method_proves(kind: str, method: str, *, filed_by_agent: bool) -> bool:
    """Whether verifying an identifier of `kind` by `method` proves it is the subject's (proving_methods)."""
    return method in proving_methods(kind, filed_by_agent=filed_by_agent)


class Organisation(models.Model):
    """A business customer (mobile operator, MVNO, ...) whose users' requests reach us, or the
    controller's own systems (marketing, CRM), which read the suppression lists."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200, unique=True)
    # The suppression lists name everyone who objected or withdrew consent: no business customer
    # may read them, only the controller's own systems.
    own_systems = models.BooleanField(
        _("the controller's own systems"),
        default=False,
        help_text=_("Our own marketing, CRM or event tools, not a business customer: only these may hold keys that read the suppression lists."),
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Team(models.Model):
    """A group of handlers; routing spreads a team's requests over its members."""

    name = models.CharField(max_length=100, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="privacy_teams", blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class StaffProfile(models.Model):
    """What the product remembers about a staff member besides their account: the language of their emails.

    Set from the dashboard's language at each sign-in and whenever they switch it there.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="staff_profile")
    language = models.CharField(max_length=8, choices=settings.LANGUAGES)

    def __str__(self) -> str:
        return f"{self.user} ({self.language})"


class AgentCapacity(models.TextChoices):
    """In what capacity someone filed a request for the data subject (the public form's "I am acting for them")."""

    AUTHORISED_AGENT = "authorised_agent", _("Authorised agent")
    PARENT_OR_GUARDIAN = "parent_or_guardian", _("Parent or guardian")
    LEGAL_REPRESENTATIVE = "legal_representative", _("Lawyer or legal representative")
    OTHER = "other", _("Other")


class AgentAuthorityMethod(models.TextChoices):
    """How staff confirmed that an agent may act for the subject: recorded in the audit trail (agent_authority_confirmed)."""

    SIGNED_PERMISSION = "signed_permission", _("The subject's signed permission, received")
    SUBJECT_CONFIRMED = "subject_confirmed", _("The subject confirmed it to us directly")
    POWER_OF_ATTORNEY = "power_of_attorney", _("A power of attorney or court order, received")
    PARENTAL_RESPONSIBILITY = "parental_responsibility", _("Proof of parental responsibility or guardianship, received")


class RejectionGround(models.TextChoices):
    # Art. 12(5): the controller bears the burden of showing which of the two a request is, so a refusal names one.
    MANIFESTLY_UNFOUNDED = "unfounded", _("Manifestly unfounded (Art. 12(5))")
    EXCESSIVE = "excessive", _("Excessive, in particular because of its repetitive character (Art. 12(5))")
    # No longer offered (REFUSABLE_GROUNDS), for the reason above: kept, with the value it was recorded under, so that
    # the requests refused on it before still name their ground as their letter did.
    UNFOUNDED_OR_EXCESSIVE = "manifestly_unfounded", _("Manifestly unfounded or excessive (Art. 12(5))")
    IDENTITY_NOT_VERIFIED = "identity_not_verified", _("Identity could not be verified")
    # Filed by an agent who did not show that the subject allowed them to act for them (CCPA Regulations § 7063(a)).
    AGENT_AUTHORITY_NOT_SHOWN = "agent_authority_not_shown", _("The agent did not show their authority to act for the subject")
    LEGAL_OBLIGATION = "legal_obligation", _("Legal obligation to retain the data (Art. 17(3)(b))")
    # Refuses the data ported only (GROUNDS_FOR_SOME_RIGHTS); the label still names Art. 15(4), as the requests whose
    # access was refused on it before read it.
    RIGHTS_OF_OTHERS = "rights_of_others", _("The rights and freedoms of others (Art. 15(4), 20(4))")
    # Each of these answers one right only: the first two as GROUNDS_FOR_SOME_RIGHTS says, the third a CCPA request to
    # limit the use of sensitive personal information (is_ccpa_limit_request).
    COMPELLING_GROUNDS = "compelling_grounds", _("Compelling legitimate grounds for the processing, or legal claims (Art. 21(1))")
    LEGAL_CLAIMS = "legal_claims", _("Needed for the establishment, exercise or defence of legal claims (Art. 17(3)(e))")
    FRAUDULENT = "fraudulent", _("A documented good-faith belief that the request is fraudulent (CCPA Regs. § 7027(f))")
    # Answers a rectification only (GROUNDS_FOR_SOME_RIGHTS): checked, the data the subject contests is right, so there
    # is nothing to correct. Not acting on the request, which the letter must explain (Art. 12(4)).
    DATA_ACCURATE = "data_accurate", _("The data is accurate and complete (Art. 16)")
    # No longer offered (REFUSABLE_GROUNDS): holding no data answers the request, it does not refuse
    # it. Kept so that requests rejected on it before still name their ground.
    NO_DATA = "no_data", _("We hold no data about this person")
    OTHER = "other", _("Other")


# The grounds staff may reject a request on today.
REFUSABLE_GROUNDS = [
    (value, label) for value, label in RejectionGround.choices
    if value not in (RejectionGround.NO_DATA, RejectionGround.UNFOUNDED_OR_EXCESSIVE)
]
# Art. 12(5), and CCPA Civ. Code § 1798.145(h)(3): any request may be refused as one or the other.
UNFOUNDED_OR_EXCESSIVE = frozenset({RejectionGround.MANIFESTLY_UNFOUNDED, RejectionGround.EXCESSIVE})
# An objection to direct marketing weighs against no interest, legal duty or other person (Art. 21(3)), and consent
# may be withdrawn at any time (Art. 7(3)): either is refused only as any request can be, on who asks or how
# (Art. 11(2), 12(5)).
GROUNDS_AGAINST_A_MARKETING_OBJECTION = frozenset(
    {RejectionGround.IDENTITY_NOT_VERIFIED, RejectionGround.AGENT_AUTHORITY_NOT_SHOWN, *UNFOUNDED_OR_EXCESSIVE}
)
# A CCPA request to limit is denied only for a documented belief that it is fraudulent (CCPA Regulations § 7027(f)),
# or as any consumer request may be, as manifestly unfounded or excessive (Civ. Code § 1798.145(h)(3)), or when an
# agent filed it without the consumer's signed permission (§ 7027).
GROUNDS_AGAINST_A_CCPA_LIMIT = frozenset(
    {RejectionGround.FRAUDULENT, *UNFOUNDED_OR_EXCESSIVE, RejectionGround.AGENT_AUTHORITY_NOT_SHOWN}
)
# Who asks is verified for the whole request or not at all: a right granted to someone whose identity could not be
# verified (Art. 12(6)) would contradict the one refused for it. Such a request is rejected, never refused in part,
# unless it asks what needs no verified identity (refuses_only_the_whole_request).
GROUNDS_OF_THE_WHOLE_REQUEST = frozenset({RejectionGround.IDENTITY_NOT_VERIFIED})
# Grounds that only some rights' articles give, and those rights: a legal duty to keep the data, or legal claims,
# are exceptions to erasure (Art. 17(3)(b) and (e)); the rights of others may refuse the data ported (Art. 20(4)),
# never access: Art. 15(4) limits only the copy of Art. 15(3), and "should not be a refusal to provide all
# information" (recital 63), so other people's data is masked or left out of the copy, and the subject still gets
# the confirmation and the Art. 15(1) and 15(2) information; the controller's compelling legitimate grounds, or its
# legal claims, answer an objection to processing on its legitimate interests (Art. 21(1)), never one to direct
# marketing (above); data found accurate and complete answers a rectification, the right to have inaccurate data
# corrected (Art. 16).
GROUNDS_FOR_SOME_RIGHTS = {
    RejectionGround.LEGAL_OBLIGATION: frozenset({RequestType.ERASURE}),
    RejectionGround.RIGHTS_OF_OTHERS: frozenset({RequestType.PORTABILITY}),
    RejectionGround.COMPELLING_GROUNDS: frozenset({RequestType.OBJECTION}),
    RejectionGround.LEGAL_CLAIMS: frozenset({RequestType.ERASURE}),
    RejectionGround.DATA_ACCURATE: frozenset({RequestType.RECTIFICATION}),
}


def is_ccpa_limit_request(right: "RequestedRight") -> bool:
    """Whether `right` is a request to limit the use of sensitive personal information under the CCPA, which CCPA
    Regulations (Cal. Code Regs. tit. 11) s. 7027 rules: "A business shall not require a verifiable consumer request
    for a request to limit" (s. 7027(e)), so an identity that could not be verified does not refuse it; "If a
    business has a good-faith, reasonable, and documented belief that a request to limit is fraudulent, the business
    may deny the request", explaining why to the requestor (s. 7027(f)): RejectionGround.FRAUDULENT, its alone."""
    return right.right == RequestType.LIMIT_USE and right.request.regime == Regime.CCPA


def ground_can_refuse(ground: str, right: "RequestedRight") -> bool:
    """Whether `ground`, one of REFUSABLE_GROUNDS, can refuse the right asked `right`: an objection to direct
    marketing or a withdrawal of consent only on GROUNDS_AGAINST_A_MARKETING_OBJECTION, a CCPA request to limit
    (is_ccpa_limit_request) only on GROUNDS_AGAINST_A_CCPA_LIMIT, the fraud ground nothing else, and a ground of
    GROUNDS_FOR_SOME_RIGHTS only its rights."""
    if right.direct_marketing or right.right == RequestType.WITHDRAW_CONSENT:
        return ground in GROUNDS_AGAINST_A_MARKETING_OBJECTION
    if is_ccpa_limit_request(right):
        return ground in GROUNDS_AGAINST_A_CCPA_LIMIT
    if ground == RejectionGround.FRAUDULENT:
        return False
    return right.right in GROUNDS_FOR_SOME_RIGHTS.get(ground, {right.right})


def refuses_only_the_whole_request(ground: str, rights) -> bool:
    """Whether `ground` can refuse a request asking `rights` (its RequestedRight rows) only whole, never one right
    of it (GROUNDS_OF_THE_WHOLE_REQUEST): beside a CCPA request to limit, granted with no identity verified
    (is_ccpa_limit_request), an identity that could not be verified refuses the other rights alone."""
    return ground in GROUNDS_OF_THE_WHOLE_REQUEST and not any(is_ccpa_limit_request(right) for right in rights)


def rights_mask(rights) -> int:
    """One bit per request type, so lists can filter and count by type without a join."""
    order = list(RequestType.values)
    return sum(1 << order.index(right) for right in set(rights))


def new_secret() -> str:
    return secrets.token_urlsafe(32)


# The longest free text anyone writes: a description, a message or reply, a note, a letter's text,
# a corrected value. Counted in characters, line breaks once.
TEXT_MAX_CHARS = 10_000


def new_nonce() -> str:
    return secrets.token_hex(16)


def comparable_name(name: str) -> str:
    """A name as compared with another: case, accents, punctuation and spacing set aside."""
    without_accents = unicodedata.normalize("NFKD", name.casefold())
    letters = "".join(character for character in without_accents if character.isalnum() or character.isspace())
    return " ".join(letters.split())


def name_search_key(name: str) -> str:
    """A name as the staff search matches it: comparable_name without its spaces, so that "jean luc", "Jean-Luc"
    and "jeanluc" all find "Jean-Luc", and "elodie" finds "Élodie"."""
    return comparable_name(name).replace(" ", "")


def no_email_to_write_to(prefix: str = "") -> models.Q:
    """The requests we have no address to write to (PrivacyRequest.correspondence_email is empty): recorded from a
    letter without one, or purged. `prefix` reaches the request from a related model ("request__")."""
    capacity, subject, agent = (f"{prefix}{name}" for name in ("agent_capacity", "subject_email", "agent_email"))
    return models.Q(**{capacity: "", subject: ""}) | (~models.Q(**{capacity: ""}) & models.Q(**{agent: ""}))


class PrivacyRequest(models.Model):
    """One submission by (or for) a data subject. It may ask for several rights."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    reference = models.CharField(max_length=20, unique=True, editable=False)
    # The capability in the subject's links. Separate from the reference,
    # which people read out on the phone and write in letters.
    secret = models.CharField(max_length=64, default=new_secret, editable=False)
    # A status link sent again from the lost-link page: it becomes `secret` when it is first opened, and the earlier
    # links stop working then. Not before: anyone who knows a reference and its email may ask for the link, and
    # must not be able to end the one the subject is using (the new link goes to the subject alone).
    pending_secret = models.CharField(max_length=64, blank=True, default="", db_default="", editable=False)
    status = models.CharField(max_length=32, choices=Status, default=Status.AWAITING_VERIFICATION)

    regime = models.CharField(max_length=16, choices=Regime, default=Regime.GDPR)
    channel = models.CharField(max_length=16, choices=Channel, default=Channel.WEB)
    language = models.CharField(max_length=8, choices=settings.LANGUAGES, default="en")
    received_at = models.DateTimeField(help_text=_("When the controller received the request."))

    subject_name = models.CharField(_("full name"), max_length=200, blank=True)
    # The names as the staff search matches them (name_search_key), set by save(): the subject's, and the agent's who
    # filed for them, one a line, so that no search matches across the two (a key holds letters and digits only).
    # Text: folding can lengthen a name.
    name_for_search = models.TextField(blank=True, editable=False)
    subject_email = models.EmailField(_("email address"), blank=True)
    subject_phone = models.CharField(_("phone number"), max_length=20, blank=True)
    customer_reference = models.CharField(_("customer account reference"), max_length=100, blank=True)
    # Where we post letters about the request, for those who made it by post or cannot be emailed: whoever filed it,
    # as correspondence_email (the agent's when an agent did). Staff record and correct it; purged with the rest.
    # The database default serves the benchmarks' bulk INSERTs.
    postal_address = models.TextField(_("postal address"), blank=True, default="", db_default="")
    relationship = models.CharField(max_length=32, choices=Relationship, default=Relationship.OTHER)
    description = models.TextField(blank=True)
    signature = models.CharField(max_length=200, blank=True, help_text=_("The typed full name."))
    signed_at = models.DateTimeField(null=True, blank=True)
    # Filed by someone acting for the subject (an authorised agent, a parent, a lawyer): the capacity they gave, empty
    # when the subject filed. We then write to the agent (correspondence_email), and nothing is disclosed, erased,
    # rectified or restricted until staff confirmed the agent's authority (agents.authority_refusal). The database
    # defaults serve the benchmarks' bulk INSERTs.
    agent_capacity = models.CharField(max_length=32, choices=AgentCapacity, blank=True, default="", db_default="")
    agent_name = models.CharField(_("agent's name"), max_length=200, blank=True, default="", db_default="")
    agent_email = models.EmailField(_("agent's email address"), blank=True, default="", db_default="")
    agent_authority_confirmed_at = models.DateTimeField(null=True, blank=True)
    # The latest link asking the subject to confirm the agent's authority (agents.subject_confirmation_send): empty
    # once answered or while none was sent, so that a link works once and a newer one replaces it.
    subject_confirmation_nonce = models.CharField(max_length=32, blank=True, default="", db_default="", editable=False)

    # Rotated whenever a new verification link is sent, so older links stop working.
    verification_nonce = models.CharField(max_length=32, default=new_nonce, editable=False)
    # When the owner of subject_email confirmed it through our link: a web request's verification, or, for a
    # request received directly, the link staff sent before releasing a package (email_unconfirmed).
    verified_at = models.DateTimeField(null=True, blank=True)
    personal_data_purged_at = models.DateTimeField(null=True, blank=True)
    # When it reached a closed status; its personal data is purged CLOSED_REQUEST_RETENTION_DAYS later.
    closed_at = models.DateTimeField(null=True, blank=True)
    organisation = models.ForeignKey(
        Organisation, null=True, blank=True, on_delete=models.PROTECT, related_name="requests"
    )
    # The rights asked, as bits (see rights_mask); the RequestedRight rows hold the details.
    rights_mask = models.PositiveIntegerField(default=0)
    # The rights a completion refused, as bits, so that what was granted is known without a query (the API's
    # lists); each RequestedRight holds its refusal_ground. The database default serves the benchmarks' bulk INSERTs.
    refused_rights_mask = models.PositiveIntegerField(default=0, db_default=0, editable=False)
    # No index of its own: request_assignee_due_idx begins with it, and each index slows every filing.
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="assigned_requests",
        db_index=False,
    )
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.PROTECT, related_name="requests")
    # Set by the routing task; a verified request with none is picked up by the sweeper.
    routed_at = models.DateTimeField(null=True, blank=True)
    rejection_ground = models.CharField(max_length=32, choices=RejectionGround, blank=True)
    # The public form's key for one filling-in (forms.RequestForm): sent twice, it files one request.
    submission_key = models.UUIDField(null=True, blank=True, unique=True, editable=False)
    # Art. 12(5): a reasonable fee for a manifestly unfounded or excessive request, told to the subject before
    # it is charged (handling.fee_propose), in FEE_CURRENCY. Proposing again replaces it until it is paid.
    fee_amount = models.DecimalField(max_digits=8, decimal_places=2, null=True, blank=True)
    fee_proposed_at = models.DateTimeField(null=True, blank=True)
    fee_paid_at = models.DateTimeField(null=True, blank=True)
    # Forwarded to the controller of the data (Status.FORWARDED): the organisation for which the carrier processes
    # it, how the subject reaches it, and when it was passed on. Kept here, not in the audit trail: the contact is
    # staff's free text, purged with the subject's details. The database default serves the benchmarks' bulk INSERTs.
    forwarded_to = models.CharField(max_length=200, blank=True, default="", db_default="")
    forwarded_to_contact = models.TextField(blank=True, default="", db_default="")
    forwarded_on = models.DateField(null=True, blank=True)

    # Deadlines: derived from received_at, the regime, the extension and the
    # pauses by requests_app.services.deadlines.refresh_deadline; never set by hand.
    due_on = models.DateField(null=True, blank=True)
    original_due_on = models.DateField(null=True, blank=True, help_text=_("The due date without the extension."))
    paused_days = models.PositiveIntegerField(default=0, help_text=_("Days added by finished clock pauses."))
    # Whether a pause is open (services.deadlines start_pause / end_pause keep it): the queue counts
    # overdue requests over 100,000 open ones, and a join to the pauses for each would be slow.
    # The database default serves the benchmarks' bulk INSERTs, which bypass the ORM.
    clock_paused = models.BooleanField(default=False, db_default=False, editable=False)
    extended_at = models.DateTimeField(null=True, blank=True)
    extended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    extension_reason = models.TextField(blank=True)
    # Receipt must be confirmed in time under some regimes (CCPA: 10 business days).
    acknowledgement_due_on = models.DateField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    # When the first email to the subject (the verification link, or the confirmation of a request
    # received directly) was last queued or tried; intake.requeue_lost_acknowledgements reads it.
    acknowledgement_queued_at = models.DateTimeField(null=True, blank=True)
    # When the subject's mail server last refused their address for good (SMTP 5xx): staff are shown it,
    # and the lost-email sweeps stop sending to it.
    subject_email_rejected_at = models.DateTimeField(null=True, blank=True)
    # The next reminder or escalation, so the sweep reads only the requests that
    # crossed a threshold. None while the clock is paused or the request is closed.
    next_alert_on = models.DateField(null=True, blank=True)
    next_alert_key = models.CharField(max_length=16, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [
            models.Index(fields=["status", "created_at"], name="request_status_created_idx"),
            models.Index(
                fields=["next_alert_on"], name="request_next_alert_idx", condition=models.Q(next_alert_on__isnull=False)
            ),
            models.Index(
                fields=["verified_at"],
                name="request_unrouted_idx",
                condition=models.Q(routed_at__isnull=True, verified_at__isnull=False),
            ),
            models.Index(
                fields=["acknowledgement_queued_at"],
                name="request_unacknowledged_idx",
                condition=models.Q(acknowledged_at__isnull=True, acknowledgement_queued_at__isnull=False),
            ),
            # The home page's and the digest's receipts to confirm (CCPA): few rows among a million.
            models.Index(
                fields=["acknowledgement_due_on"],
                name="request_receipt_due_idx",
                condition=models.Q(acknowledged_at__isnull=True, acknowledgement_due_on__isnull=False),
            ),
            models.Index(
                fields=["closed_at"], name="request_retained_idx", condition=models.Q(personal_data_purged_at__isnull=True)
            ),
            models.Index(fields=["status", "due_on"], name="request_status_due_idx"),
            models.Index(fields=["assignee", "status", "due_on"], name="request_assignee_due_idx"),
            # The queue's default order. The partial index serves the default
            # (open) view without stepping over years of closed requests.
            models.Index(fields=["due_on", "id"], name="request_due_idx"),
            models.Index(
                fields=["due_on", "id"],
                name="request_open_due_idx",
                condition=models.Q(
                    status__in=["awaiting_verification", "new", "identity_check", "in_progress", "awaiting_subject"]
                ),
            ),
            # Search by email is case-insensitive (iexact compares UPPER()).
            models.Index(Upper("subject_email"), name="request_email_upper_idx"),
            # The same search finds the requests an agent filed by the agent's address: few rows, a partial index.
            models.Index(Upper("agent_email"), name="request_agent_email_upper_idx", condition=~models.Q(agent_email="")),
        ]

    def __str__(self) -> str:
        return self.reference

    @property
    def requested_rights(self) -> list[str]:
        """The rights asked (RequestType values, in their declared order), read from rights_mask: no query.
        Rights never change after intake, so the mask and the RequestedRight rows agree."""
        return [right for bit, right in enumerate(RequestType.values) if self.rights_mask & (1 << bit)]

    @property
    def limits_use_under_ccpa(self) -> bool:
        """A CCPA request to limit the use of sensitive personal information: due within 15 business days, which no
        extension moves, and applied without verifying who asks (CCPA Regulations § 7027(e), (g)(1))."""
        return self.regime == Regime.CCPA and RequestType.LIMIT_USE in self.requested_rights

    @property
    def refused_rights(self) -> list[str]:
        """The rights a completion refused (RequestedRight.refusal_ground), in their declared order, read from
        refused_rights_mask: no query. Empty before the request is completed; a rejection refuses it whole instead."""
        return [right for bit, right in enumerate(RequestType.values) if self.refused_rights_mask & (1 << bit)]

    @property
    def granted_rights(self) -> list[str]:
        """The rights asked and not refused: what completing the request must answer. All of them until a
        completion refuses some."""
        return [right for right in self.requested_rights if right not in self.refused_rights]

    @property
    def signature_differs_from_name(self) -> bool:
        """A typed signature that is not the name given: the staff page points it out for the identity check. An agent
        signs with their own name."""
        signer = self.agent_name if self.filed_by_agent else self.subject_name
        return bool(self.signature) and comparable_name(self.signature) != comparable_name(signer)

    @property
    def filed_by_agent(self) -> bool:
        return bool(self.agent_capacity)

    @property
    def correspondence_email(self) -> str:
        """Where we write about the request: whoever filed it, the agent when an agent did (the verification link,
        the status page link, letters). Never an identity of the subject's: the agent's address is not searched for
        in the source systems."""
        return self.agent_email if self.filed_by_agent else self.subject_email

    @property
    def agent_authority_unconfirmed(self) -> bool:
        return self.filed_by_agent and self.agent_authority_confirmed_at is None

    def save(self, *args, **kwargs):
        update_fields = kwargs.get("update_fields")
        names = {"subject_name", "agent_name"}
        if update_fields is None or names & set(update_fields):
            self.name_for_search = "\n".join(name_search_key(name) for name in (self.subject_name, self.agent_name) if name)
        if update_fields is not None and names & set(update_fields):
            kwargs["update_fields"] = {*update_fields, "name_for_search"}
        super().save(*args, **kwargs)

    @property
    def is_open(self) -> bool:
        from requests_app.lifecycle import OPEN_STATUSES

        return self.status in OPEN_STATUSES

    def lifting_announced(self) -> "SourceAction | None":
        """The lifting of a restriction the subject was sent notice of and that has neither run nor been cancelled (the
        earliest due, if several), or None. Until it runs they may object, the request closed as it may be: its status
        page takes their messages meanwhile (takes_subject_messages)."""
        if self.personal_data_purged_at is not None:
            return None  # nor can it run
        return (
            self.source_actions.filter(kind=ActionKind.LIFT_RESTRICTION, lift_notice__isnull=False)
            .exclude(status__in=[ActionStatus.DONE, ActionStatus.CANCELLED])
            .order_by("lift_not_before")
            .first()
        )

    @property
    def takes_subject_messages(self) -> bool:
        """Whether the subject may write to the DPO team on the request: while it is open, or while a lifting they were
        told of is pending (Art. 18(3): told so that they can object in time)."""
        return self.is_open or self.lifting_announced() is not None

    @property
    def email_unconfirmed(self) -> bool:
        """Whether the status page link went to an email address its owner never confirmed. A request received
        directly (recorded by staff from a letter, call or email, or filed by an organisation over the API) has its
        address typed by someone else and its link emailed at once: a typo's owner would read the subject's page.
        Until the owner confirms it through the link staff send (intake.email_confirmation_send, which sets
        verified_at), no unencrypted package is released to that page. A web request's address was confirmed
        before it left awaiting verification; a request without an address has no link sent anywhere."""
        return bool(self.correspondence_email) and self.channel != Channel.WEB and self.verified_at is None

    @property
    def is_extended(self) -> bool:
        return self.extended_at is not None

    @property
    def acknowledgement_met(self) -> bool | None:
        """Whether receipt was confirmed in time; None where no rule applies or not yet known. None too for a
        request closed by its date without one: it was answered, withdrawn or expired first, and the confirmation
        owed was dropped (emails.NEEDS_OPEN_REQUEST)."""
        if self.acknowledgement_due_on is None:
            return None
        if self.acknowledged_at is None and self.closed_at is not None:
            return False if timezone.localdate(self.closed_at) > self.acknowledgement_due_on else None
        if self.acknowledged_at is None:
            return False if timezone.localdate() > self.acknowledgement_due_on else None
        return timezone.localdate(self.acknowledged_at) <= self.acknowledgement_due_on


class ClockPause(models.Model):
    """A stretch of time the statutory clock stood still, waiting on the subject.

    Opened and closed automatically on entering and leaving "awaiting subject",
    or by staff with a reason. At most one pause per request is open.
    """

    request = models.ForeignKey(PrivacyRequest, on_delete=models.CASCADE, related_name="pauses")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField()
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["request"], condition=models.Q(ended_at__isnull=True), name="one_open_pause_per_request"
            )
        ]

    def __str__(self) -> str:
        return f"pause from {self.started_at:%Y-%m-%d}"


class RequestedRight(models.Model):
    """One right asked for in a request, with the details that right needs."""

    # No index of its own: unique_right_per_request's begins with it, and each index slows every filing.
    request = models.ForeignKey(PrivacyRequest, on_delete=models.CASCADE, related_name="rights", db_index=False)
    right = models.CharField(max_length=32, choices=RequestType)
    rectification_data = models.CharField(_("data to correct"), max_length=500, blank=True)
    rectification_value = models.TextField(_("corrected value"), blank=True)
    restriction_ground = models.CharField(max_length=32, choices=RestrictionGround, blank=True)
    # The source systems staff chose for the restriction to cover: Art. 18 restricts the data its ground
    # concerns, not all that is held. Empty until first planned (actions.restriction_sources gives the default).
    restriction_sources = models.ManyToManyField("SourceSystem", blank=True, related_name="+")
    objection_processing = models.TextField(_("processing objected to"), blank=True)
    # An objection to direct marketing (Art. 21(2)) is absolute: no interest weighs against it (Art. 21(3)).
    direct_marketing = models.BooleanField(_("objects to direct marketing"), default=False)
    consent_withdrawn = models.TextField(_("consent withdrawn"), blank=True)
    # Portability only (Art. 20(2)): the other organisation the subject asks us to send the data to directly, if any.
    # The subject's words, purged with their details; staff send it the package's link (exports.export_transmit) or
    # decline, with the reason the subject is told (exports.export_transmission_decline).
    recipient_name = models.CharField(_("organisation to send the data to"), max_length=200, blank=True, default="", db_default="")
    recipient_email = models.EmailField(_("that organisation's email address"), blank=True, default="", db_default="")
    transmission_declined_at = models.DateTimeField(null=True, blank=True)
    transmission_decline_reason = models.TextField(blank=True, default="", db_default="")
    # Set when the request was completed with this right refused (handling.request_complete): the ground, from
    # REFUSABLE_GROUNDS. The reasons given to the subject are in the completion letter, as a rejection's are.
    refusal_ground = models.CharField(max_length=32, choices=RejectionGround, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["request", "right"], name="unique_right_per_request")]
        ordering = ["id"]

    def __str__(self) -> str:
        return self.get_right_display()

    def right_for_staff(self) -> str:
        """The right as staff read it, of the subject (RIGHTS_THE_SUBJECT_ASKS)."""
        return str(RIGHTS_THE_SUBJECT_ASKS[self.right])

    def right_for_correspondent(self) -> str:
        """The right as whoever filed reads it on the status page and in our emails and letters: in the subject's own
        words ("my data"), or, for an agent who filed for them, of the subject ("their data")."""
        return self.right_for_staff() if self.request.filed_by_agent else self.get_right_display()

    def restriction_ground_for_staff(self) -> str:
        return str(RESTRICTION_GROUNDS_THE_SUBJECT_GIVES.get(self.restriction_ground, ""))


def normalised_identifier(kind: str, value: str) -> str:
    """One spelling per identifier, so that a source, a suppression list or a lookup finds it however it was
    typed: an email address lower-cased (sources keep addresses in lower case, and "Ana@Example.COM" is Ana's),
    a phone number in E.164."""
    value = value.strip()
    if kind == IdentityKind.EMAIL:
        return value.lower()
    if kind == IdentityKind.PHONE:
        return to_e164(value) or value
    return value


class SubjectIdentityQuerySet(models.QuerySet):
    def searchable(self):
        """Those the source systems may be searched by: verified, by a method that proves their kind is the
        subject's (IDENTITY_PROVING_METHODS). One verified before the rule, a phone number by an identity document
        say, stays as recorded and is not searched until staff verify it again by a method that proves it. Every
        verification records its method: only one recorded that does not prove the kind takes a row out."""
        unproven = models.Q()
        for kind, methods in IDENTITY_PROVING_METHODS.items():
            others = [method for method in VerificationMethod.values if method not in methods]
            unproven |= models.Q(kind=kind, verification_method__in=others)
        # An agent's request: an identity document does not prove the subject's email address (proving_methods).
        unproven |= models.Q(
            kind=IdentityKind.EMAIL, verification_method=VerificationMethod.DOCUMENT, request__agent_capacity__gt=""
        )
        return self.filter(verified_at__isnull=False).exclude(unproven)


class SubjectIdentity(models.Model):
    """An identifier the subject gave, as normalised_identifier spells it. Source systems are searched only by
    verified ones, verified by a method that proves them (SubjectIdentityQuerySet.searchable)."""

    # No index of its own: unique_identity_per_request's begins with it, and each index slows every filing.
    request = models.ForeignKey(PrivacyRequest, on_delete=models.CASCADE, related_name="identities", db_index=False)
    kind = models.CharField(max_length=32, choices=IdentityKind)
    value = models.CharField(max_length=254)
    verified_at = models.DateTimeField(null=True, blank=True)
    verification_method = models.CharField(max_length=32, choices=VerificationMethod, blank=True)
    verified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    objects = SubjectIdentityQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["request", "kind", "value"], name="unique_identity_per_request")
        ]
        indexes = [
            # The same identifier verified on other requests (selectors.identities_verified_for_someone_else, and
            # restrictions in force elsewhere). Partial: a filing inserts its identifiers unverified, and writes nothing here.
            models.Index(fields=["kind", "value"], condition=models.Q(verified_at__isnull=False), name="verified_identity_value"),
        ]
        ordering = ["id"]
        verbose_name_plural = "subject identities"

    def __str__(self) -> str:
        return self.get_kind_display()

    @property
    def is_verified(self) -> bool:
        return self.verified_at is not None

    @property
    def not_searched_for_its_method(self) -> bool:
        """Verified, but by a method that does not prove its kind: the source systems are not searched by it
        (SubjectIdentityQuerySet.searchable)."""
        return (
            self.is_verified
            and bool(self.verification_method)
            and not method_proves(self.kind, self.verification_method, filed_by_agent=self.request.filed_by_agent)
        )

    @property
    def is_searchable(self) -> bool:
        return self.is_verified and not self.not_searched_for_its_method


def attachment_upload_to(instance: "Attachment", filename: str) -> str:
    # The stored name is opaque: the original file name may hold personal data.
    return f"attachments/{instance.public_id}"


class Attachment(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    request = models.ForeignKey(PrivacyRequest, on_delete=models.CASCADE, related_name="attachments")
    # Empty once deleted, as is the original name (which may hold personal data): see deleted_at.
    file = models.FileField(upload_to=attachment_upload_to, blank=True)
    original_name = models.CharField(max_length=255, blank=True)
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The subject's reply it came with (a copy of an ID asked for), if any.
    message = models.ForeignKey("Message", null=True, blank=True, on_delete=models.CASCADE, related_name="attachments")
    # Sent as proof of identity (the subject ticked so on their status page): deleted once an identifier is
    # verified, by whatever method, or when the request closes unverified (handling.delete_identity_documents),
    # as the request form's notice promises. Other documents (proof for a correction, say) stay for staff to judge.
    identity_document = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # Staff deleted the file before the request's data is purged (a copy of an ID, once checked:
    # handling.attachment_delete). The row stays as a tombstone, so the thread still shows that a document came
    # and when and by whom it was deleted; the file and its name are gone.
    deleted_at = models.DateTimeField(null=True, blank=True)
    deleted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(deleted_at__isnull=True) | models.Q(file="", original_name=""),
                name="deleted_attachment_keeps_no_file",
            )
        ]

    def __str__(self) -> str:
        return self.original_name or "deleted attachment"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


class ReferenceCounter(models.Model):
    """The last reference number handed out in a year (DSR-2026-00042)."""

    year = models.PositiveIntegerField(primary_key=True)
    last_number = models.PositiveIntegerField(default=0)


class ActorKind(models.TextChoices):
    SYSTEM = "system", _("System")
    SUBJECT = "subject", _("Data subject")
    STAFF = "staff", _("Staff")
    ORGANISATION = "organisation", _("Organisation")


class AuditEvent(models.Model):
    """An append-only, hash-chained record of something that happened.

    `hash` covers the event's content and `previous_hash`, and `sequence` has
    no gaps, so editing, deleting or reordering any event breaks the chain
    (see `requests_app.audit.verify_chain`). Events hold no personal data, so
    purging a request's personal data never touches the chain.
    """

    sequence = models.PositiveBigIntegerField(unique=True, editable=False)
    # No index of its own: audit_request_sequence_idx begins with it, and each index slows every event.
    request = models.ForeignKey(
        PrivacyRequest, null=True, blank=True, on_delete=models.PROTECT, related_name="events", db_index=False
    )
    actor_kind = models.CharField(max_length=16, choices=ActorKind)
    # Staff accounts are deactivated, not deleted, so the trail keeps its actors.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_label = models.CharField(max_length=150)
    action = models.CharField(max_length=64)
    from_status = models.CharField(max_length=32, blank=True)
    to_status = models.CharField(max_length=32, blank=True)
    note = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(editable=False)
    previous_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, editable=False)

    class Meta:
        ordering = ["sequence"]
        indexes = [models.Index(fields=["request", "sequence"], name="audit_request_sequence_idx")]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.action}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ValueError("Audit events are append-only and cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Audit events are append-only and cannot be deleted")


class AuditChainHead(models.Model):
    """The newest event's sequence and hash; locked to append the next event."""

    sequence = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)


class AuditChainCheck(models.Model):
    """One walk over the whole audit chain (nightly, or `manage.py verify_audit_chain`).

    The latest one is what the staff home page and completion certificates
    report, so that they need not walk every event themselves.
    """

    checked_at = models.DateTimeField(default=timezone.now, db_index=True)
    events_checked = models.PositiveBigIntegerField()
    broken_at_sequence = models.PositiveBigIntegerField(null=True, blank=True)
    reason = models.CharField(max_length=200, blank=True)
    # A break found by the nightly task is owed to the DPOs as an alert: when its task was last queued or tried,
    # and when it went out. The lost-work sweep queues again one whose task the broker lost (emails.requeue_owed_alerts).
    alert_queued_at = models.DateTimeField(null=True, blank=True)
    alert_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        get_latest_by = "checked_at"

    def __str__(self) -> str:
        return f"chain check {self.checked_at:%Y-%m-%d %H:%M}: " + ("intact" if self.intact else "broken")

    @property
    def intact(self) -> bool:
        return self.broken_at_sequence is None


class SentNotification(models.Model):
    """Marks an email (or the request.created webhook) as sent, so a task that runs twice sends it once.

    `key` tells apart the notifications of one kind (the verification nonce, a
    reminder threshold); the unique constraint is the claim.
    """

    # No index of its own: unique_notification's begins with it.
    request = models.ForeignKey(PrivacyRequest, on_delete=models.CASCADE, related_name="notifications", db_index=False)
    kind = models.CharField(max_length=64)
    key = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set once the email went out. Until then the email is owed: deadline alerts are claimed by the
    # sweep first (services.deadlines), other emails by emails.owe when their task is queued.
    sent_at = models.DateTimeField(null=True, blank=True)
    # When an owed email's task was last queued or tried (emails.requeue_owed_emails and the deadline
    # sweep's re-dispatch read it).
    queued_at = models.DateTimeField(null=True, blank=True)
    # A deadline alert goes as one email per language: the recipients ("assignee", "dpo") whose email went
    # out, or whose address was refused for good. A try after a failure part-way sends only the others.
    recipients_done = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["request", "kind", "key"], name="unique_notification")
        ]
        indexes = [
            models.Index(fields=["created_at"], name="notification_unsent_idx", condition=models.Q(sent_at__isnull=True))
        ]


class AssignmentRule(models.Model):
    """Who gets a verified request. Rules are tried in `position` order; the first match wins.

    An empty criterion matches anything. A rule assigns to a team (spread
    over its members) or to one person.
    """

    position = models.PositiveIntegerField(default=100)
    name = models.CharField(max_length=100)
    active = models.BooleanField(default=True)
    request_type = models.CharField(max_length=32, choices=RequestType, blank=True)
    regime = models.CharField(max_length=16, choices=Regime, blank=True)
    channel = models.CharField(max_length=16, choices=Channel, blank=True)
    organisation = models.ForeignKey(Organisation, null=True, blank=True, on_delete=models.CASCADE)
    assign_team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE)
    assign_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(assign_team__isnull=True) ^ models.Q(assign_user__isnull=True),
                name="rule_assigns_team_or_user",
                # Shown by the rule form, which validates the constraint (ModelForm does).
                violation_error_message=_("Assign to a team or to a person, not both and not neither."),
            )
        ]

    def __str__(self) -> str:
        return self.name

    def matches(self, request: PrivacyRequest, rights: list[str]) -> bool:
        return (
            (not self.request_type or self.request_type in rights)
            and (not self.regime or self.regime == request.regime)
            and (not self.channel or self.channel == request.channel)
            and (self.organisation_id is None or self.organisation_id == request.organisation_id)
        )


class TemplatePurpose(models.TextChoices):
    MESSAGE = "message", _("Message to the subject")
    INFORMATION_REQUEST = "information_request", _("Request for information")
    COMPLETION = "completion", _("Completion letter")
    REJECTION = "rejection", _("Rejection letter")
    FEE = "fee", _("Fee letter (Art. 12(5))")
    RESTRICTION_LIFT = "restriction_lift", _("Notice before lifting a restriction (Art. 18(3))")
    RESTRICTION_LIFT_CANCELLED = "restriction_lift_cancelled", _("Notice that a restriction stays in force after all")


class ResponseTemplate(models.Model):
    """Wording the DPO keeps for messages and letters, per purpose, request type and language.

    The body may use {{ reference }}, {{ due_on }} and {{ rights }}. It must use
    {{ body }}, what staff write for this request (a completion's reason, say),
    and, in rejection letters, {{ reason }}, the legal ground (Art. 12(4)), with
    the full stop that ends the sentence naming it; in fee
    letters, {{ fee }}, the amount with its currency (Art. 12(5)); in the notice
    before a restriction is lifted, {{ source }} and {{ lift_on }}, which system
    and from which day (Art. 18(3)); in the notice that it stays in force after
    all, {{ source }}, and may use {{ lift_on }}, the day the first notice gave.
    An if tag may test {{ by_post }}, {{ clock_paused }} and {{ to_agent }} (an agent filed the request for the
    subject: the letter goes to them, of the data of the person they act for). A completion letter's text may place {{ outcome }},
    the paragraphs the law requires it to say, which otherwise end it (letters.place_outcome). No other name
    (letters.PLACEHOLDERS), unless a for or with tag of the template binds it.
    """

    purpose = models.CharField(max_length=32, choices=TemplatePurpose)
    request_type = models.CharField(max_length=32, choices=RequestType, blank=True, help_text=_("Empty: any type."))
    language = models.CharField(max_length=8, choices=settings.LANGUAGES, default="en")
    subject = models.CharField(max_length=200)
    body = models.TextField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["purpose", "request_type", "language"]
        constraints = [
            models.UniqueConstraint(fields=["purpose", "request_type", "language"], name="unique_response_template")
        ]

    # What a letter of the purpose must say besides {{ body }}: the legal ground of a rejection, the fee's amount.
    PURPOSE_PLACEHOLDERS = {
        TemplatePurpose.REJECTION: ["reason"],
        TemplatePurpose.FEE: ["fee"],
        TemplatePurpose.RESTRICTION_LIFT: ["source", "lift_on"],
        TemplatePurpose.RESTRICTION_LIFT_CANCELLED: ["source"],
    }

    def __str__(self) -> str:
        return f"{self.get_purpose_display()} ({self.request_type or 'any type'}, {self.language})"

    def clean(self):
        from django.template import TemplateSyntaxError
        from django.template.base import VariableNode

        from requests_app import letters

        errors = {}
        for name in ("subject", "body"):
            # Only a completion letter's text has {{ outcome }}, where request_complete puts what the law requires.
            outcome = name == "body" and self.purpose == TemplatePurpose.COMPLETION
            try:
                renders = letters.render_with_sample_values(getattr(self, name), outcome=outcome)
                unknown = renders.unknown
                if unknown:
                    # A misspelt placeholder ({{ due_date }}) is no error to Django: it would print nothing, and
                    # the subject read "Hallo  Wir melden uns bald." (A template saved before this check still
                    # renders so: render_letter does not refuse it.)
                    errors[name] = ngettext(
                        "%(names)s is not a placeholder: it would print nothing in the letter. Use one of %(placeholders)s.",
                        "%(names)s are not placeholders: they would print nothing in the letter. Use one of %(placeholders)s.",
                        len(unknown),
                    ) % {
                        "names": ", ".join(f"“{unknown_name}”" for unknown_name in sorted(unknown)),
                        "placeholders": ", ".join([*letters.PLACEHOLDERS, *(["outcome"] if outcome else [])]),
                    }
                elif "outcome" in renders.asked and any(text.count(letters.OUTCOME_MARK) != 1 for text in renders.texts):
                    # Left out of a letter, the paragraphs would come at its end; twice, they would be said twice; under
                    # a filter ({{ outcome|upper }}), the letter would show what stands for them.
                    errors[name] = _(
                        "{{ outcome }} must be printed once, as it is (without a filter), in every letter, by email and by "
                        "post: it stands for the paragraphs the law requires (what was done or kept, the rights refused, the "
                        "recipients told and the right to complain)."
                    )
            except TemplateSyntaxError as error:
                errors[name] = _("This template has an error: %(error)s") % {"error": error}
            except Exception as error:  # a filter may raise anything, and would in every letter
                errors[name] = _("A letter cannot be written with this template: %(error)s") % {"error": error}
        if errors:
            raise ValidationError(errors)
        nodes = letters.parse(self.body).nodelist.get_nodes_by_type(VariableNode)
        used = {str(node.filter_expression.var) for node in nodes}
        required = ["body", *self.PURPOSE_PLACEHOLDERS.get(self.purpose, [])]
        missing = [name for name in required if name not in used]
        if missing:
            raise ValidationError(
                {"body": _("The text must contain %(placeholders)s, or the letter would leave out what you write or choose for each request.")
                 % {"placeholders": ", ".join("{{ %s }}" % name for name in missing)}}
            )


class InternalNote(models.Model):
    """A note between staff; never shown to the subject."""

    request = models.ForeignKey(PrivacyRequest, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]


class MessageDirection(models.TextChoices):
    TO_SUBJECT = "to_subject", _("To the subject")
    FROM_SUBJECT = "from_subject", _("From the subject")


class Message(models.Model):
    """The thread with the subject: staff messages and letters are emailed, replies come from the status page."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    request = models.ForeignKey(PrivacyRequest, on_delete=models.CASCADE, related_name="messages")
    direction = models.CharField(max_length=16, choices=MessageDirection)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    subject = models.CharField(max_length=200, blank=True)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    # A message to the subject is emailed by a task: when it was last queued or tried, and when it went.
    queued_at = models.DateTimeField(null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)
    # A request for information that asked the agent for proof of their authority to act for the subject (staff said
    # so when sending it): only such a question lets staff reject the request on AGENT_AUTHORITY_NOT_SHOWN
    # (agents.rejection_refusal), not one asking something else.
    asks_agent_authority = models.BooleanField(default=False, db_default=False, editable=False)

    class Meta:
        ordering = ["created_at", "id"]


class ClosedRequestCount(models.Model):
    """How many closed requests share each combination of the queue's filter columns.

    Closed states are final and a closed request's filter columns never change,
    so each closing adds one here (lifecycle.transition) and nothing ever
    subtracts. The queue's counts for closed requests are read from these few
    rows instead of scanning every request ever received. Ids use 0 for "none".
    """

    status = models.CharField(max_length=32, choices=Status)
    regime = models.CharField(max_length=16)
    channel = models.CharField(max_length=16)
    assignee_key = models.PositiveIntegerField()
    organisation_key = models.PositiveIntegerField()
    rights_mask = models.PositiveIntegerField()
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["status", "regime", "channel", "assignee_key", "organisation_key", "rights_mask"],
                name="unique_closed_count",
            )
        ]


class APIKeyScope(models.TextChoices):
    READ = "read", _("Read: follow requests")
    WRITE = "write", _("Write: file and act on requests")
    # For the company's own systems: sees no requests, only the suppression lists.
    SUPPRESSION = "suppression", _("Suppression lists: read the lists (the company's own systems)")


class OrganisationAPIKey(AbstractAPIKey):
    """A business customer's key for the REST API: hashed at rest, shown once, identified by
    its prefix, revocable and expiring (djangorestframework-api-key)."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="api_keys")
    scope = models.CharField(max_length=16, choices=APIKeyScope, default=APIKeyScope.READ)
    # The admin's add form's key for one filling-in: sent twice (a double click), it issues one key.
    submission_key = models.UUIDField(null=True, blank=True, unique=True, editable=False)

    def clean(self):
        super().clean()
        if self.scope == APIKeyScope.SUPPRESSION and self.organisation_id and not self.organisation.own_systems:
            raise ValidationError(
                {"scope": _("Only the controller's own systems may read the suppression lists: this organisation is a business customer.")}
            )

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "organisation API key"
        verbose_name_plural = "organisation API keys"  # the library's base says "API keys"


class IdempotencyRecord(models.Model):
    """The stored answer to a POST made with an Idempotency-Key, per organisation.

    Created (without a response) before the POST is handled: a second call
    with the same key while the first runs finds it unfinished (409).
    """

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text=_("SHA-256 of the method, path and body."))
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    # JSON as text, not a JSONField: jsonb reorders an object's keys, and a replay must be the answer byte for byte.
    response_body = models.TextField(null=True, blank=True)
    # The answer's headers a replay repeats (idempotency.REPLAYED_HEADERS): a 201's Location, its Content-Language.
    response_headers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organisation", "key"], name="unique_idempotency_key")]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created_idx")]


class UsernameLockout(models.Model):
    """Wrong passwords for one username from every address this account never signed in from, counted in windows
    of LOGIN_USERNAME_LOCKOUT_MINUTES, and the lockout they began (staff.lockout): django-axes counts a username's
    failures from each address apart, and a guesser spreading theirs over many addresses was never locked out.
    One row per username typed, an account's or not, so that a lockout says nothing of whether one exists."""

    # As typed, as django-axes keeps it; deleted with its records (staff_setup.purge_sign_in_records).
    username = models.CharField(max_length=255, unique=True)
    window_started_at = models.DateTimeField()
    failures = models.PositiveIntegerField(default=0)
    locked_until = models.DateTimeField(null=True, blank=True)
    # The locked_until of the lockout whose email went: a redelivered task must not send it twice.
    alert_sent_for = models.DateTimeField(null=True, blank=True)
    # When the email of the lockout was last queued: owed until alert_sent_for says it went, and queued again by the
    # lost-work sweep (emails.requeue_owed_alerts) if its task was lost. Null for a username of no account: no email.
    alert_queued_at = models.DateTimeField(null=True, blank=True)


class WebhookEvent(models.TextChoices):
    REQUEST_CREATED = "request.created", "request.created"
    REQUEST_STATUS_CHANGED = "request.status_changed", "request.status_changed"
    REQUEST_DUE_DATE_CHANGED = "request.due_date_changed", "request.due_date_changed"
    EXPORT_READY = "export.ready", "export.ready"


def new_webhook_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


class WebhookEndpoint(models.Model):
    """An organisation's URL that receives signed events about its requests.

    Its secret is shown to the DPO once, when it is issued (the endpoint's creation, or a roll:
    services.webhooks.roll_secret); no page shows it again. After a roll the previous secret
    goes on signing beside the new one until `previous_secret_expires_at`.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=500, help_text=_("HTTPS, e.g. https://portal.example.com/privacy/webhooks"))
    # Shared with the organisation to check signatures; HMAC needs it in the clear.
    secret = models.CharField(max_length=100, default=new_webhook_secret, editable=False)
    # When `secret` was issued. A roll's confirmation form carries it, so a form sent twice (a
    # reload, a second click) or after someone else's roll rolls nothing.
    secret_created_at = models.DateTimeField(default=timezone.now, editable=False)
    # The secret a roll replaced, still signing until the overlap ends; blank when none is.
    previous_secret = models.CharField(max_length=100, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    active = models.BooleanField(default=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    # The DPOs' alert of its latest disabling, owed as a broken audit chain's is (AuditChainCheck.alert_queued_at).
    disabled_alert_queued_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_alert_sent_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # The admin's add form's key for one filling-in: sent twice (a double click), it adds one endpoint.
    submission_key = models.UUIDField(null=True, blank=True, unique=True, editable=False)

    class Meta:
        ordering = ["organisation", "url"]

    def __str__(self) -> str:
        return self.url

    def previous_secret_signs(self, now: datetime.datetime | None = None) -> bool:
        """Whether a roll's overlap is under way: the previous secret still signs beside the current one."""
        return bool(self.previous_secret) and self.previous_secret_expires_at is not None and (
            self.previous_secret_expires_at > (now or timezone.now())
        )

    def signing_secrets(self, now: datetime.datetime | None = None) -> list[str]:
        """The secrets an attempt made at `now` is signed with: the current one, then the previous one
        during an overlap (last, where a receiver that reads only the last signature looks)."""
        return [self.secret, self.previous_secret] if self.previous_secret_signs(now) else [self.secret]

    def clean(self):
        # Checked again at each delivery (services.webhooks.post_signed); refused here so the DPO
        # hears of it when saving, not 24 hours of failed deliveries later.
        from requests_app.services.webhooks import check_url

        try:
            check_url(self.url)
        except ValidationError as error:
            raise ValidationError({"url": error.messages}) from None


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    DELIVERED = "delivered", _("Delivered")
    FAILED = "failed", _("Failed")


class WebhookDelivery(models.Model):
    """One event for one endpoint, retried with exponential backoff for WEBHOOK_RETRY_WINDOW."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # The event's id and time, sent as `Webhook-Id` and in the body: a manual redelivery is a
    # new delivery of the same event, and the receiver must see the same id (to skip a repeat).
    event_id = models.UUIDField(default=uuid.uuid4, editable=False, db_index=True)
    occurred_at = models.DateTimeField(default=timezone.now, editable=False)
    # No index of its own: webhook_log_endpoint_idx begins with it.
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    event = models.CharField(max_length=40, choices=WebhookEvent)
    # Ids, references, states and dates only: never personal data.
    payload = models.JSONField()
    # The request the event is about (its `payload["request"]`), for the moment of its latest event to an endpoint
    # (services.webhooks._event_moment), read through webhook_request_events_idx. Not a foreign key: the log keeps
    # its own retention (purge_deliveries), and a request's deletion neither takes its deliveries nor waits on them.
    request_public_id = models.UUIDField(null=True, blank=True, editable=False)
    status = models.CharField(max_length=16, choices=DeliveryStatus, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = _("webhook deliveries")
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"], name="webhook_due_idx", condition=models.Q(status="pending")
            ),
            # The staff's delivery log reads its pages newest first (selectors.webhook_deliveries), from these
            # rather than by sorting the whole log: all of it (and the nightly purge of its oldest lines),
            models.Index(fields=["created_at", "id"], name="webhook_log_idx"),
            # one endpoint's or organisation's (an endpoint's deletion takes its deliveries through it too),
            models.Index(fields=["endpoint", "created_at", "id"], name="webhook_log_endpoint_idx"),
            # and the failed ones, few and perhaps months old, that the DPO looks for to redeliver. The other states
            # need none of their own: pending deliveries are in webhook_due_idx, and nearly all are delivered.
            models.Index(fields=["created_at", "id"], name="webhook_log_failed_idx", condition=models.Q(status="failed")),
            # The latest event about a request to an endpoint, read under the request's lock at each event.
            models.Index(fields=["endpoint", "request_public_id", "occurred_at"], name="webhook_request_events_idx"),
        ]


class DailyDigest(models.Model):
    """One row per day the DPO's digest went out: the claim that makes it daily."""

    day = models.DateField(unique=True)
    sent_at = models.DateTimeField(auto_now_add=True)


# --- Data inventory (the record of processing, GDPR Art. 30) -----------------


class DataCategory(models.TextChoices):
    CONTACT = "contact", _("Contact information")
    WEBSITE_CONNECTION = "website_connection", _("Website connection data")
    ELECTRONIC_COMMUNICATIONS = "electronic_communications", _("Electronic communications data (call detail records)")
    OTHER = "other", _("Other")


class LegalBasis(models.TextChoices):
    CONSENT = "consent", _("Consent (Art. 6(1)(a))")
    CONTRACT = "contract", _("Performance of a contract (Art. 6(1)(b))")
    LEGAL_OBLIGATION = "legal_obligation", _("Legal obligation (Art. 6(1)(c))")
    LEGITIMATE_INTERESTS = "legitimate_interests", _("Legitimate interests (Art. 6(1)(f))")


# Art. 20(1)(a): the right to data portability covers only processing on consent (Art. 6(1)(a), 9(2)(a)) or a
# contract (Art. 6(1)(b)). Data kept under a legal obligation or for legitimate interests is not portable,
# however much the subject's use produced it (call records the networks generate, say).
PORTABLE_LEGAL_BASES = (LegalBasis.CONSENT, LegalBasis.CONTRACT)

# Why a category is left out of a portability package, as the manifest records it.
NOT_PROVIDED_BY_SUBJECT = "not_provided_by_subject"
LEGAL_BASIS_NOT_PORTABLE = "legal_basis_not_portable"


# Inventory names end up in SQL statements (quoted), so only plain identifiers are accepted.
validate_sql_name = RegexValidator(
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$",
    _("Use a plain name of letters, digits and underscores, or two joined by a dot (schema.table)."),
)
# A field of the records themselves, as the export reads them: no table or schema in front.
validate_field_name = RegexValidator(r"^[A-Za-z_][A-Za-z0-9_]*$", _("Use a plain name: letters, digits and underscores."))


def validate_restriction_list(value: str) -> None:
    if value and not value.startswith("/"):
        validate_sql_name(value)
        if "." not in value:
            raise ValidationError(_("SQL: give table.column; HTTP: a path starting with /."))


class EraseMethod(models.TextChoices):
    DELETE = "delete", _("Delete the rows")
    ANONYMISE = "anonymise", _("Anonymise the fields listed with an erasure strategy")


class ConnectorKind(models.TextChoices):
    SQL = "sql", _("SQL database")
    HTTP = "http", _("HTTP JSON API")
    MANUAL = "manual", _("Manual extract by the system owner")


# A language's name as it reads inside a sentence ("not yet translated into German"): French writes it in lower
# case ("en allemand"), where the language switcher and the choice lists keep LANGUAGES' capital ("Allemand").
LANGUAGE_NAMES_IN_SENTENCE = {
    "en": pgettext_lazy("a language's name inside a sentence", "English"),
    "fr": pgettext_lazy("a language's name inside a sentence", "French"),
    "nl": pgettext_lazy("a language's name inside a sentence", "Dutch"),
    "de": pgettext_lazy("a language's name inside a sentence", "German"),
}


def translation_languages() -> list[tuple[str, str]]:
    """The site's languages other than the default one, which the inventory's main texts are written in, each
    with its name as it reads inside a sentence."""
    return [(code, LANGUAGE_NAMES_IN_SENTENCE[code]) for code, _name in settings.LANGUAGES if code != settings.LANGUAGE_CODE]


MAIN_TEXT_HELP = _("In the site's default language: subjects who read another get its translation, where one is given.")


def text_digest(text: str) -> str:
    """A short fingerprint of a main text, which a translation keeps to know whether it still translates it."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class TextTranslation(models.Model):
    """The base of an inventory item's texts in one of the site's other languages."""

    # Each main text's digest when the translation was saved: one changed since shows the translation as
    # due for review (TranslatedTexts.languages_outdated). Subjects go on reading it meanwhile: an older
    # translation in their language serves them better than the new text in one they may not read.
    translated_from = models.JSONField(default=dict, blank=True, editable=False)

    ITEM_FIELD = ""  # the link to the item translated

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if self._state.adding and not self.translated_from:
            # Created without the DPO's form (a script, the shell): it translates today's main texts.
            self.translated_from = getattr(self, self.ITEM_FIELD).main_text_digests()
        super().save(*args, **kwargs)


class TranslatedTexts:
    """An inventory item whose TRANSLATED_FIELDS subjects read: written in the default language, and given
    in the others by its `translations` (one row per language). Reads `translations.all()`: prefetch it
    for many items."""

    TRANSLATED_FIELDS: tuple[str, ...] = ()
    OPTIONAL_TRANSLATIONS: tuple[str, ...] = ()

    def _translations_given(self, language: str) -> dict[str, str]:
        """The texts the item's translation into `language` gives, by field: those left empty are not given."""
        translation = next((candidate for candidate in self.translations.all() if candidate.language == language), None)
        if translation is None:
            return {}
        return {field: getattr(translation, field) for field in self.TRANSLATED_FIELDS if getattr(translation, field)}

    def texts_in(self, language: str) -> dict[str, str]:
        """The texts for a reader of `language`: each translated one given, else the main text.

        Per field, so a translation left empty in one field never leaves the subject without that fact."""
        given = self._translations_given(language)
        return {field: given.get(field) or getattr(self, field) for field in self.TRANSLATED_FIELDS}

    def texts_untranslated_in(self, language: str) -> list[str]:
        """The fields whose written main text a reader of `language` gets as it is, for want of a translation
        (texts_in's fallback): none for a reader of the default language, which the main texts are written in."""
        if language == settings.LANGUAGE_CODE:
            return []
        given = self._translations_given(language)
        return [field for field in self.TRANSLATED_FIELDS if getattr(self, field) and field not in given]

    def main_text_digests(self) -> dict[str, str]:
        return {field: text_digest(getattr(self, field)) for field in self.TRANSLATED_FIELDS}

    def languages_outdated(self) -> list[tuple[str, str]]:
        """The other languages (code, name) whose translation gives a text whose main text changed since."""
        digests = self.main_text_digests()
        by_language = {translation.language: translation for translation in self.translations.all()}
        return [
            (code, name)
            for code, name in translation_languages()
            if code in by_language
            and any(
                getattr(by_language[code], field) and by_language[code].translated_from.get(field) != digests[field]
                for field in self.TRANSLATED_FIELDS
            )
        ]

    def languages_missing(self) -> list[tuple[str, str]]:
        """The other languages (code, name) in which one of the item's written texts has no translation yet."""
        return [
            (code, name)
            for code, name in translation_languages()
            if set(self.texts_untranslated_in(code)) - set(self.OPTIONAL_TRANSLATIONS)
        ]


class SourceSystem(TranslatedTexts, models.Model):
    """A system that holds personal data, with the facts Art. 15 asks us to give about it.

    Connection secrets are never stored here: `connection_env` names the
    environment variable that holds the database URL or the API token.
    """

    slug = models.SlugField(max_length=50, unique=True, help_text=_("Folder name in export packages."))
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, help_text=MAIN_TEXT_HELP)
    active = models.BooleanField(default=True)
    identity_kind = models.CharField(
        max_length=32, choices=IdentityKind, help_text=_("The identifier this system is searched by.")
    )
    purposes = models.TextField(help_text=format_lazy("{} {}", _("Why the data is processed (Art. 15(1)(a))."), MAIN_TEXT_HELP))
    legal_basis = models.CharField(max_length=32, choices=LegalBasis)
    retention = models.TextField(
        help_text=format_lazy("{} {}", _("How long it is kept, or the criteria (Art. 15(1)(d))."), MAIN_TEXT_HELP)
    )
    origin = models.TextField(
        help_text=format_lazy("{} {}", _("Where the data comes from when not from the person (Art. 15(1)(g))."), MAIN_TEXT_HELP)
    )
    automated_decisions = models.TextField(
        blank=True,
        help_text=format_lazy(
            "{} {}", _("Automated decision-making and its logic, if any (Art. 15(1)(h)). Empty: none."), MAIN_TEXT_HELP
        ),
    )
    connector = models.CharField(max_length=16, choices=ConnectorKind)
    connection_url = models.CharField(
        max_length=500, blank=True, help_text=_("SQL: a database URL without password. HTTP: the base URL.")
    )
    connection_env = models.CharField(
        max_length=100,
        blank=True,
        help_text=_(
            "Environment variable (named SOURCE_...) holding the secret: the full database URL (SQL) or the API token (HTTP)."
        ),
    )
    http_auth_header = models.CharField(max_length=100, blank=True, default="Authorization")
    restriction_list = models.CharField(
        max_length=200,
        blank=True,
        validators=[validate_restriction_list],
        help_text=_(
            "Where a restricted person's identifier is recorded. SQL: table.column to insert it into. "
            "HTTP: a path to POST {\"identity\": ...} to. Empty: restriction uses the categories' flags only."
        ),
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text=_("Manual sources: the staff member who uploads extracts."),
    )

    class Meta:
        ordering = ["name"]

    # The texts the subject reads in the access report and the letters, and so translated (SourceSystemTranslation).
    TRANSLATED_FIELDS = ("name", "description", "purposes", "retention", "origin", "automated_decisions")
    # A name may read the same in every language (a brand: "Salesforce"): left untranslated, it is not missing.
    OPTIONAL_TRANSLATIONS = ("name",)

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        # The field accepts both spellings; which one can work depends on the connector.
        if not self.restriction_list:
            return
        is_path = self.restriction_list.startswith("/")
        if self.connector == ConnectorKind.SQL and is_path:
            raise ValidationError({"restriction_list": _("A SQL source records restrictions in a table.column.")})
        if self.connector == ConnectorKind.HTTP and not is_path:
            raise ValidationError({"restriction_list": _("An HTTP source records restrictions at a path starting with /.")})
        if self.connector == ConnectorKind.MANUAL:
            raise ValidationError(
                {"restriction_list": _("A manual source's owner records restrictions by hand: leave this empty.")}
            )


class SourceSystemTranslation(TextTranslation):
    """A source's subject-facing texts in one of the site's other languages (GDPR Art. 12: intelligible to
    the subject). A text left empty falls back to the source's main text."""

    ITEM_FIELD = "source"

    source = models.ForeignKey(SourceSystem, on_delete=models.CASCADE, related_name="translations")
    language = models.CharField(max_length=8, choices=settings.LANGUAGES)
    name = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    purposes = models.TextField()
    retention = models.TextField()
    origin = models.TextField()
    automated_decisions = models.TextField(blank=True)

    class Meta:
        ordering = ["source", "language"]
        constraints = [models.UniqueConstraint(fields=["source", "language"], name="unique_source_translation")]

    def __str__(self) -> str:
        return f"{self.source} ({self.language})"


class SourceCategory(TranslatedTexts, models.Model):
    """One kind of data in a source, and how to fetch it for a set of identities.

    SQL: a query with the placeholder :identities, e.g.
    SELECT * FROM cdrs WHERE caller IN :identities. HTTP: a path template with
    {identity}, e.g. /subscribers/{identity}/records.
    """

    source = models.ForeignKey(SourceSystem, on_delete=models.CASCADE, related_name="categories")
    slug = models.SlugField(max_length=50, help_text=_("File name in export packages."))
    category = models.CharField(max_length=32, choices=DataCategory)
    description = models.TextField(blank=True)
    query = models.TextField(blank=True)
    masked_fields = models.CharField(
        max_length=500,
        blank=True,
        help_text=_("Comma-separated fields that identify other people (Art. 15(4)); masked in exports."),
    )
    portable = models.BooleanField(
        default=True, help_text=_("Provided by the subject or observed from their use (Art. 20): part of a portability export.")
    )
    # How erasure, rectification and restriction reach the rows (see sources/actions.py).
    table = models.CharField(
        max_length=100,
        blank=True,
        validators=[validate_sql_name],
        help_text=_("SQL: the table holding the category's rows, changed by erasure, rectification and restriction."),
    )
    identity_field = models.CharField(
        max_length=100,
        blank=True,
        validators=[validate_sql_name],
        help_text=_("SQL: the column holding the identifier the source is searched by, e.g. caller."),
    )
    record_key = models.CharField(
        max_length=100,
        blank=True,
        # Placeholders in capitals: a help text is shown as HTML, where <path> would vanish as a tag.
        help_text=_("HTTP: the record field that names one record; records are changed at PATH/KEY."),
    )
    erase_method = models.CharField(max_length=16, choices=EraseMethod, default=EraseMethod.DELETE)
    restriction_flag = models.CharField(
        max_length=100,
        blank=True,
        validators=[validate_sql_name],
        help_text=_("A boolean field set to true to restrict processing of the rows. Empty: none."),
    )

    class Meta:
        verbose_name_plural = _("source categories")
        ordering = ["source", "slug"]
        constraints = [models.UniqueConstraint(fields=["source", "slug"], name="unique_category_per_source")]

    # The text the subject reads in the access report, and so translated (SourceCategoryTranslation).
    TRANSLATED_FIELDS = ("description",)

    def __str__(self) -> str:
        return f"{self.source.slug}/{self.slug}"

    @property
    def masked_field_list(self) -> list[str]:
        return [field.strip() for field in self.masked_fields.split(",") if field.strip()]

    def portability_exclusion(self) -> str:
        """Why a portability package leaves the category out (a code), or "" when Art. 20 covers it: data the
        subject provided or their use produced, processed on their consent or a contract."""
        if not self.portable:
            return NOT_PROVIDED_BY_SUBJECT
        if self.source.legal_basis not in PORTABLE_LEGAL_BASES:
            return LEGAL_BASIS_NOT_PORTABLE
        return ""


class SourceCategoryTranslation(TextTranslation):
    """A category's description in one of the site's other languages (see SourceSystemTranslation)."""

    ITEM_FIELD = "category"

    category = models.ForeignKey(SourceCategory, on_delete=models.CASCADE, related_name="translations")
    language = models.CharField(max_length=8, choices=settings.LANGUAGES)
    description = models.TextField()

    class Meta:
        ordering = ["category", "language"]
        constraints = [models.UniqueConstraint(fields=["category", "language"], name="unique_source_category_translation")]

    def __str__(self) -> str:
        return f"{self.category} ({self.language})"


class Recipient(TranslatedTexts, models.Model):
    """Who receives a source's data (Art. 15(1)(c)), with transfer safeguards (Art. 15(2))."""

    source = models.ForeignKey(SourceSystem, on_delete=models.CASCADE, related_name="recipients")
    name = models.CharField(max_length=200)
    country = models.CharField(max_length=100)
    third_country = models.BooleanField(default=False, help_text=_("Outside the EU/EEA."))
    safeguards = models.TextField(
        blank=True, help_text=format_lazy("{} {}", _("E.g. EU standard contractual clauses."), MAIN_TEXT_HELP)
    )
    notification_email = models.EmailField(
        blank=True, help_text=_("Art. 19: where rectifications, erasures and restrictions are notified.")
    )
    notification_webhook_url = models.URLField(
        max_length=500, blank=True, help_text=_("Art. 19: or an HTTPS URL that receives a signed JSON notice.")
    )
    webhook_secret = models.CharField(max_length=100, default=new_webhook_secret, editable=False)

    class Meta:
        ordering = ["source", "name"]

    @property
    def webhook_secret_seen(self) -> str:
        """What the page offering a new secret knew of the current one (a digest, never the secret): sent again
        after that secret was replaced, the form replaces nothing."""
        return hashlib.sha256(self.webhook_secret.encode()).hexdigest()[:16]

    # The texts the subject reads in the access report, the letters, the certificate and the status page, and so
    # translated (RecipientTranslation).
    TRANSLATED_FIELDS = ("name", "country", "safeguards")
    # A company's name may read the same in every language: left untranslated, it is not missing.
    OPTIONAL_TRANSLATIONS = ("name",)

    @property
    def reachable(self) -> bool:
        """Whether an Art. 19 notice has somewhere to go: an email address or a webhook URL."""
        return bool(self.notification_email or self.notification_webhook_url)

    def __str__(self) -> str:
        return self.name


class RecipientTranslation(TextTranslation):
    """A recipient's name, country and transfer safeguards in one of the site's other languages (see
    SourceSystemTranslation). Each may be left empty: a recipient with no safeguards may still have its
    name translated ("Group companies"), and a company's name may need none."""

    ITEM_FIELD = "recipient"

    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="translations")
    language = models.CharField(max_length=8, choices=settings.LANGUAGES)
    name = models.CharField(max_length=200, blank=True)
    country = models.CharField(max_length=100, blank=True)
    safeguards = models.TextField(blank=True)

    class Meta:
        ordering = ["recipient", "language"]
        constraints = [models.UniqueConstraint(fields=["recipient", "language"], name="unique_recipient_translation")]

    def __str__(self) -> str:
        return f"{self.recipient} ({self.language})"


class ExportStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Compiling")
    WAITING_MANUAL = "waiting_manual", _("Waiting for manual extracts")
    FAILED = "failed", _("Failed")
    READY = "ready", _("Ready for review")
    RELEASED = "released", _("Released to the subject")
    EXPIRED = "expired", _("Expired and deleted")


class ExportKind(models.TextChoices):
    ACCESS = "access", _("Access (Art. 15)")
    PORTABILITY = "portability", _("Portability (Art. 20)")


# The package each right is answered with (Art. 15 access, Art. 20 portability).
PACKAGE_FOR_RIGHT = {RequestType.ACCESS: ExportKind.ACCESS, RequestType.PORTABILITY: ExportKind.PORTABILITY}


def answers_a_refused_right() -> models.Q:
    """Packages whose kind answers a right the request's completion refused (PACKAGE_FOR_RIGHT), by the right's bit
    in the request's refused_rights_mask (rights_mask): the letter told the subject so, and they are not delivered."""
    refused = models.Q()
    for right, kind in PACKAGE_FOR_RIGHT.items():
        refused |= models.Q(GreaterThan(models.F("request__refused_rights_mask").bitand(rights_mask([right])), 0), kind=kind)
    return refused


# A request refused, withdrawn, forwarded to its controller or never verified gets no data: its packages are
# neither released nor served, and are deleted (a completed request's still are served).
NO_DATA_DELIVERED = (Status.REJECTED, Status.WITHDRAWN, Status.EXPIRED, Status.FORWARDED)


class ExportPackageQuerySet(models.QuerySet):
    def deliverable(self):
        """Released packages still inside their expiry, of requests not refused or withdrawn, answering no right
        refused, whatever downloads the subject has left: those the subject may resume a download of, or be told are
        unchanged (304), without counting a download. A completion that refuses a right ends its package at once, but
        not one another transaction holds locked (exports.end_packages_of_refused_rights): that one is never served
        before the clean-up ends it."""
        return (
            self.filter(status=ExportStatus.RELEASED, expires_at__gt=timezone.now())
            .exclude(request__status__in=NO_DATA_DELIVERED)
            .exclude(answers_a_refused_right())
        )

    def downloadable(self):
        """The packages the subject may still download: deliverable, and under the subject's download limit."""
        return self.deliverable().filter(download_count__lt=models.F("max_downloads"))

    def downloadable_by_organisation(self):
        """The packages the organisation that filed the request may still download over the API: shared
        with it, deliverable, and under its own download limit."""
        return self.shared_and_deliverable().filter(organisation_download_count__lt=models.F("max_downloads"))

    def sendable_to_recipient(self):
        """The portability packages staff may still send to the organisation the subject named (Art. 20(2)):
        deliverable, and not sent already."""
        return self.deliverable().filter(kind=ExportKind.PORTABILITY, transmitted_at__isnull=True)

    def downloadable_by_recipient(self):
        """The packages the organisation the subject asked us to send their data to may still download through the
        link we emailed it: sent there, deliverable, and under its own download limit."""
        return self.deliverable().filter(transmitted_at__isnull=False, recipient_download_count__lt=models.F("max_downloads"))

    def shared_and_deliverable(self):
        """The packages shared with the organisation that filed the request and not ended, whatever downloads it has
        left: those it may resume a download of, or be told are unchanged (304), without counting a download."""
        return self.deliverable().filter(shared_with_organisation=True)


class ExportPackage(models.Model):
    """A ZIP of a subject's data compiled from the source systems, and its delivery."""

    objects = ExportPackageQuerySet.as_manager()

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    request = models.ForeignKey(PrivacyRequest, on_delete=models.CASCADE, related_name="exports")
    kind = models.CharField(max_length=16, choices=ExportKind, default=ExportKind.ACCESS)
    status = models.CharField(max_length=16, choices=ExportStatus, default=ExportStatus.QUEUED)
    # Each run bumps the attempt; only the run holding the current attempt may finish it.
    attempt = models.PositiveIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # When a compile task was last queued: one queued long ago and never taken was lost by the broker.
    queued_at = models.DateTimeField(null=True, blank=True)
    progress = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    failed_source = models.CharField(max_length=50, blank=True)
    encrypted = models.BooleanField(default=False)
    # The ZIP password, kept only from compilation until it is texted to the
    # subject at release, then erased.
    pending_password = models.CharField(max_length=64, blank=True)
    storage_name = models.CharField(max_length=300, blank=True)
    size = models.PositiveBigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    released_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    expires_at = models.DateTimeField(null=True, blank=True)
    # Each may download it max_downloads times: the subject through their link (download_count), and
    # the organisation it is shared with over the API (organisation_download_count). Counted apart: the
    # subject was told how many downloads they have, and the organisation's must not use theirs up.
    max_downloads = models.PositiveIntegerField(default=5)
    download_count = models.PositiveIntegerField(default=0)
    organisation_download_count = models.PositiveIntegerField(default=0)
    # Staff may let the organisation that filed the request fetch the package over the API.
    shared_with_organisation = models.BooleanField(default=False)
    # A portability package staff sent to the organisation the subject named (Art. 20(2)): its link, emailed there,
    # downloads it max_downloads times too, counted apart from the subject's (recipient_download_count).
    transmitted_at = models.DateTimeField(null=True, blank=True)
    transmitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    recipient_download_count = models.PositiveIntegerField(default=0, db_default=0)
    # When that organisation's mail server refused the address the link was last sent to, for good: the link never
    # arrived. Staff may then correct the address and send it again (transmission.transmission_resend), or decline.
    transmission_rejected_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "expires_at"], name="export_status_expiry_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} export of {self.request_id}"

    @property
    def downloads_left(self) -> int:
        """The subject's."""
        return max(self.max_downloads - self.download_count, 0)

    @property
    def organisation_downloads_left(self) -> int:
        return max(self.max_downloads - self.organisation_download_count, 0)

    @property
    def recipient_downloads_left(self) -> int:
        return max(self.max_downloads - self.recipient_download_count, 0)

    @property
    def found_nothing(self) -> bool:
        """Whether the compiled package holds no records: our answer that nothing was found, not "your data"."""
        return self.manifest.get("rows") == 0

    def progress_in_words(self) -> str:
        """How far its compilation got, in the active language: "1 row, 2/3 sources"; once compiled with sources left
        unsearched (no verified identifier of their kind, no extract asked), how many were searched: "0 rows, 1 of 3
        sources searched", not "3/3 sources", which would read as three sources searched and found empty."""
        rows = self.progress.get("rows") or 0
        not_searched = len(self.manifest.get("sources_not_searched", []))
        total = self.progress.get("sources_total")
        if not_searched and total:
            return ngettext(
                "%(rows)s row, %(searched)s of %(total)s sources searched", "%(rows)s rows, %(searched)s of %(total)s sources searched", rows
            ) % {"rows": rows, "searched": total - not_searched, "total": total}
        return ngettext("%(rows)s row, %(done)s/%(total)s sources", "%(rows)s rows, %(done)s/%(total)s sources", rows) % {
            "rows": rows, "done": self.progress.get("sources_done") or 0, "total": self.progress.get("sources_total") or "?",
        }


class ManualTask(models.Model):
    """A manual source's part of an export: its owner uploads the extract."""

    export = models.ForeignKey(ExportPackage, on_delete=models.CASCADE, related_name="manual_tasks")
    source = models.ForeignKey(SourceSystem, on_delete=models.PROTECT, related_name="+")
    assignee = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    upload = models.FileField(upload_to="manual-extracts/", blank=True)
    done_at = models.DateTimeField(null=True, blank=True)
    done_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["export", "source"], name="one_manual_task_per_source")]


# --- Acting on rights: erasure, rectification, restriction (Art. 16-19, 21) --


class FieldType(models.TextChoices):
    TEXT = "text", _("Text")
    INTEGER = "integer", _("Whole number")
    DECIMAL = "decimal", _("Decimal number")
    DATE = "date", _("Date")
    DATETIME = "datetime", _("Date and time")
    BOOLEAN = "boolean", _("Yes/no")
    EMAIL = "email", _("Email address")
    PHONE = "phone", _("Phone number")


class EraseStrategy(models.TextChoices):
    KEEP = "keep", _("Keep (not personal once the rest is anonymised)")
    NULL = "null", _("Empty it (NULL)")
    FIXED = "fixed", _("Replace with a fixed text")
    # Still personal data: erasure writes it only under a legal hold on the codes (LegalHold.pseudonyms_only).
    HASH = "hash", _("Replace with a keyed hash (a pseudonym: kept only under a legal hold on the codes)")


class SourceField(TranslatedTexts, models.Model):
    """A field of a category: its type, for validating rectifications, and how erasure anonymises it."""

    TRANSLATED_FIELDS = ("label",)

    category = models.ForeignKey(SourceCategory, on_delete=models.CASCADE, related_name="fields")
    name = models.CharField(max_length=100, validators=[validate_sql_name])
    # Letters tell the subject which of their data was corrected or pseudonymised: in words, not "billing_address".
    label = models.CharField(
        max_length=100, help_text=_("How letters to the subject name this field, for example \"billing address\".")
    )
    type = models.CharField(max_length=16, choices=FieldType, default=FieldType.TEXT)
    # Erased unless the DPO decides otherwise: a field added and left unconfigured must not be kept as "not personal"
    # (and named so in the letter). Emptying works for a column of any type, a replacement text only for text.
    erase_strategy = models.CharField(max_length=8, choices=EraseStrategy, default=EraseStrategy.NULL)
    fixed_text = models.CharField(max_length=200, blank=True, help_text=_("For the fixed-text strategy."))
    rectifiable = models.BooleanField(default=True, help_text=_("Staff may correct this field on a rectification."))

    class Meta:
        ordering = ["category", "name"]
        constraints = [models.UniqueConstraint(fields=["category", "name"], name="unique_field_per_category")]

    def __str__(self) -> str:
        return f"{self.category}.{self.name}"

    def clean(self) -> None:
        # The column the source is searched by holds an identifier of the subject (their email address, phone
        # number, customer reference or IP address): we find them by it, so it identifies them whatever else is erased.
        category = getattr(self, "category", None)  # none yet on a form that failed to give one
        if self.erase_strategy == EraseStrategy.KEEP and category is not None and self.name == category.identity_field:
            raise ValidationError({
                "erase_strategy": _(
                    "The source finds the subject by this field: it identifies them even once the rest is erased. "
                    "Empty it or replace it."
                )
            })


class SourceFieldTranslation(TextTranslation):
    """A field's label in one of the site's other languages (see SourceSystemTranslation)."""

    ITEM_FIELD = "field"

    field = models.ForeignKey(SourceField, on_delete=models.CASCADE, related_name="translations")
    language = models.CharField(max_length=8, choices=settings.LANGUAGES)
    label = models.CharField(max_length=100)

    class Meta:
        ordering = ["field", "language"]
        constraints = [models.UniqueConstraint(fields=["field", "language"], name="unique_source_field_translation")]

    def __str__(self) -> str:
        return f"{self.field} ({self.language})"


class ErasureException(models.TextChoices):
    """The grounds of Art. 17(3) a carrier relies on to keep data after an erasure request."""

    LEGAL_OBLIGATION = "legal_obligation", _("Compliance with a legal obligation (Art. 17(3)(b))")
    PUBLIC_HEALTH = "public_health", _("Public interest in public health (Art. 17(3)(c))")
    ARCHIVING = "archiving", _("Archiving, research or statistics (Art. 17(3)(d))")
    LEGAL_CLAIMS = "legal_claims", _("Establishment, exercise or defence of legal claims (Art. 17(3)(e))")


# Ten years: longer than any retention duty the law sets for communications records.
MAX_HOLD_MONTHS = 120


class LegalHold(TranslatedTexts, models.Model):
    """Data that must be kept despite an erasure request: a whole source, or one of its categories.

    A rolling hold (keep_months) keeps only a category's recent records, as a retention duty does
    (call records for 12 months): records dated before that are erased like any other data.
    """

    source = models.ForeignKey(SourceSystem, on_delete=models.CASCADE, related_name="legal_holds")
    category = models.ForeignKey(
        SourceCategory, null=True, blank=True, on_delete=models.CASCADE, related_name="legal_holds",
        help_text=_("Empty: every category of the source."),
    )
    ground = models.CharField(max_length=32, choices=ErasureException)
    basis = models.TextField(
        help_text=_("The law or claim, in words the subject understands, e.g. 'Belgian telecom law requires call records for 12 months'.")
    )
    until = models.DateField(help_text=_("The hold ends at the end of this day."))
    keep_months = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_HOLD_MONTHS)],
        help_text=_("Keep only the records of the last this many months, dated by the field below; older ones are erased. Empty: keep every record."),
    )
    dated_by = models.CharField(
        max_length=100,
        blank=True,
        validators=[validate_field_name],
        help_text=_("With a number of months: the field holding each record's date, e.g. started_at."),
    )
    # A keyed hash is a pseudonym, not erasure (Recital 26): whoever holds the key can match it to the subject
    # again. An erasure writes one only under a hold of this kind, whose ground the letter states (actions.build_plan).
    pseudonyms_only = models.BooleanField(
        default=False,
        help_text=_("Keep only the codes (keyed hashes) that erasure writes in place of the fields set to be replaced by a "
                    "keyed hash; the rest of the data is erased."),
    )

    class Meta:
        ordering = ["source", "category", "until"]
        # A rolling hold (keep_months) needs the field that dates the records, and so one category. As
        # constraints, not clean(): a form's own error on a field (months below 1, say) then stands alone.
        constraints = [
            models.CheckConstraint(
                condition=models.Q(keep_months__isnull=True) | ~models.Q(dated_by=""),
                name="rolling_hold_has_date_field",
                violation_error_message=_("Name the field that dates each record, to tell the recent ones from the older."),
            ),
            models.CheckConstraint(
                condition=models.Q(dated_by="") | models.Q(keep_months__isnull=False),
                name="date_field_only_with_months",
                violation_error_message=_("Give the number of months to keep, or leave the date field empty."),
            ),
            models.CheckConstraint(
                condition=models.Q(keep_months__isnull=True) | models.Q(category__isnull=False),
                name="rolling_hold_has_category",
                violation_error_message=_("A hold on the last months names one category: the date field is that category's."),
            ),
            models.CheckConstraint(
                condition=models.Q(pseudonyms_only=False) | models.Q(keep_months__isnull=True),
                name="pseudonym_hold_keeps_no_records",
                violation_error_message=_("A hold on the codes keeps no records: leave the number of months empty."),
            ),
        ]

    # The text the completion letter quotes to the subject, and so translated (LegalHoldTranslation).
    TRANSLATED_FIELDS = ("basis",)

    def __str__(self) -> str:
        # Its end date is a field of its own, shown in the reader's format where it matters.
        return f"{self.category or self.source}: {self.get_ground_display()}"

    def kept_from(self, today: datetime.date) -> datetime.date | None:
        """The first day whose records a rolling hold keeps on `today`; None: it keeps every record."""
        if self.keep_months is None:
            return None
        return add_months(today, -self.keep_months)

    def kept_until(self, today: datetime.date) -> datetime.date:
        """The last day the hold keeps anything it keeps on `today`: a rolling hold's newest record
        (dated today at the latest) reaches its limit keep_months from now, unless the hold ends first."""
        if self.keep_months is None:
            return self.until
        return min(self.until, add_months(today, self.keep_months))


class LegalHoldTranslation(TextTranslation):
    """A hold's basis in one of the site's other languages (see SourceSystemTranslation): the completion
    letter tells the subject, in their language, why data was kept."""

    ITEM_FIELD = "hold"

    hold = models.ForeignKey(LegalHold, on_delete=models.CASCADE, related_name="translations")
    language = models.CharField(max_length=8, choices=settings.LANGUAGES)
    basis = models.TextField()

    class Meta:
        ordering = ["hold", "language"]
        constraints = [models.UniqueConstraint(fields=["hold", "language"], name="unique_legal_hold_translation")]

    def __str__(self) -> str:
        return f"{self.hold} ({self.language})"


class ActionKind(models.TextChoices):
    ERASE = "erase", _("Erasure")
    RECTIFY = "rectify", _("Rectification")
    RESTRICT = "restrict", _("Restriction")
    # Not a right the subject asks for: staff end a restriction that was temporary (Art. 18(1)(a), (d)),
    # after telling the subject (Art. 18(3)). It outlives the request, which may be closed by then.
    LIFT_RESTRICTION = "lift_restriction", _("Lifting of a restriction")


# The actions that answer the request's rights: completion and the Art. 19 notices wait for these only.
ANSWERING_KINDS = (ActionKind.ERASE, ActionKind.RECTIFY, ActionKind.RESTRICT)
# The right each of them answers, in the source systems.
ACTION_FOR_RIGHT = {
    RequestType.ERASURE: ActionKind.ERASE,
    RequestType.RECTIFICATION: ActionKind.RECTIFY,
    RequestType.RESTRICTION: ActionKind.RESTRICT,
}


class ActionStatus(models.TextChoices):
    PLANNED = "planned", _("Planned: dry run needed")
    DRY_RUNNING = "dry_running", _("Dry run in progress")
    AWAITING_APPROVAL = "awaiting_approval", _("Dry run ready: awaiting approval")
    APPROVED = "approved", _("Approved")
    RUNNING = "running", _("Executing")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")
    STALE = "stale", _("Source changed since the dry run")
    MANUAL = "manual", _("Waiting for the system owner")
    # A lifting of a restriction staff called off before it ran (services/lifting.py): the restriction stays.
    CANCELLED = "cancelled", _("Cancelled")


class SourceAction(models.Model):
    """One erasure, rectification or restriction of a request's data in one source system, or the
    lifting of a restriction carried out there.

    planned -> (dry run) -> awaiting_approval -> approved -> running -> done,
    or failed (retry runs it again) or stale (the source changed since the dry
    run: run it again and approve anew). Manual sources wait for their owner.
    A lifting may be cancelled until it runs; a new one may be planned after.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    request = models.ForeignKey(PrivacyRequest, on_delete=models.CASCADE, related_name="source_actions")
    source = models.ForeignKey(SourceSystem, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=ActionKind)
    status = models.CharField(max_length=24, choices=ActionStatus, default=ActionStatus.PLANNED)
    # Per category: {"category", "rows", "fields", "held": {...} or null}, and the rows' fingerprint.
    dry_run = models.JSONField(default=dict, blank=True)
    dry_run_at = models.DateTimeField(null=True, blank=True)
    # Who started the current dry run: with SOURCE_ACTION_FOUR_EYES, someone else approves it.
    dry_run_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    approved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    approved_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # The current dry run's or execution's task token: only that task may record its outcome.
    run_token = models.CharField(max_length=16, blank=True, editable=False)
    progress = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.CharField(max_length=300, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # When a worker took the current execution. A worker that finds it already set was handed the
    # task again: the first one died, maybe after changing the source.
    taken_at = models.DateTimeField(null=True, blank=True)
    # The current dry run or execution (its run token) as workers run it: how many took it (a run that
    # died is taken over by the next), stamped by the running one's heartbeat while its process lives,
    # and when its task was last queued (requests_app.heartbeat, services.actions.requeue_dead_actions).
    run_attempt = models.PositiveIntegerField(default=0, editable=False)
    heartbeat_at = models.DateTimeField(null=True, blank=True, editable=False)
    queued_at = models.DateTimeField(null=True, blank=True, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True)
    done_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text=_("Manual sources: the owner who confirmed the change."),
    )
    # Lifting a restriction: why (staff's words, quoted in the notice to the subject, purged with the
    # request), and the first day it may be carried out, which the notice gave the subject (Art. 18(3)).
    lift_reason = models.TextField(blank=True)
    lift_not_before = models.DateField(null=True, blank=True)
    lift_notice = models.ForeignKey("Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The notice sent by post, where the subject could not be emailed (no address, or their server refuses it): when
    # staff recorded it posted, and who. Until then the lifting waits (services.actions.lift_notice_to_post).
    lift_notice_posted_at = models.DateTimeField(null=True, blank=True)
    lift_notice_posted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # A lifting cancelled before it ran: who and when, why (staff's words, quoted in the letter telling the
    # subject the restriction stays in force, purged with the request), and that letter.
    cancelled_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    cancelled_at = models.DateTimeField(null=True, blank=True)
    lift_cancel_reason = models.TextField(blank=True)
    lift_cancel_notice = models.ForeignKey("Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["source__name", "kind", "id"]
        constraints = [
            # A cancelled lifting stays on record beside the one planned after it.
            models.UniqueConstraint(
                fields=["request", "source", "kind"], condition=~models.Q(status=ActionStatus.CANCELLED),
                name="one_live_action_per_source_and_kind",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} in {self.source_id} for {self.request_id}"

    def changed_categories(self) -> list[str]:
        """The categories (slugs) where the finished action's result counts a change. A held category is
        not in the result: erasure skipped it.

        A correction counts the values it changed, not the rows it matched: a row that already held the
        corrected value was matched and left as it was, and neither the letter nor a recipient may be told
        of a correction that did not happen.
        """
        counted = "fields" if self.kind == ActionKind.RECTIFY else "rows"
        return [counts["category"] for counts in self.result.get("categories", []) if counts.get(counted)]

    def changed_anything(self) -> bool:
        """Whether the finished action's result records any change: in a category, on the restriction
        list, or confirmed by a manual source's owner (who reports rows, not categories)."""
        return bool(self.changed_categories() or self.result.get("list_entries") or self.result.get("rows"))


class RectificationChange(models.Model):
    """A corrected value staff decided on for one field of one category (Art. 16)."""

    # No index of its own: one_change_per_request_field's begins with it.
    request = models.ForeignKey(PrivacyRequest, on_delete=models.CASCADE, related_name="rectification_changes", db_index=False)
    category = models.ForeignKey(SourceCategory, on_delete=models.PROTECT, related_name="+")
    field = models.CharField(max_length=100)
    value = models.TextField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["category", "field"]
        constraints = [
            models.UniqueConstraint(fields=["request", "category", "field"], name="one_change_per_request_field")
        ]


class NoticeStatus(models.TextChoices):
    PENDING = "pending", _("To send once the actions are done")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed")
    # Art. 19's exceptions (impossible, disproportionate effort), or no disclosure to tell of: WaiverReason.
    WAIVED = "waived", _("Not sent: reason recorded")
    NOT_NEEDED = "not_needed", _("Not needed: nothing changed in this source")


class WaiverReason(models.TextChoices):
    IMPOSSIBLE = "impossible", _("Impossible")
    DISPROPORTIONATE = "disproportionate", _("Disproportionate effort")
    # Not an Art. 19 exception but a fact: the inventory lists the recipient for the source, yet none of
    # this subject's data was ever disclosed to it, so there is nothing to tell it.
    NEVER_DISCLOSED = "never_disclosed", _("Never received this person's data")


class RecipientNotice(models.Model):
    """Art. 19: telling a recipient of a source's data about the request's changes there."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # No index of its own: one_notice_per_recipient's begins with it.
    request = models.ForeignKey(PrivacyRequest, on_delete=models.CASCADE, related_name="recipient_notices", db_index=False)
    recipient = models.ForeignKey(Recipient, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=16, choices=NoticeStatus, default=NoticeStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # When a send task was last queued or tried it: a pending notice quiet for longer than the
    # retries' longest wait has lost its task.
    queued_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    waiver_reason = models.CharField(max_length=16, choices=WaiverReason, blank=True)
    waiver_note = models.TextField(blank=True)
    waived_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    waived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["recipient__name"]
        constraints = [models.UniqueConstraint(fields=["request", "recipient"], name="one_notice_per_recipient")]


class SuppressionPurpose(TranslatedTexts, models.Model):
    """A use of personal data people can opt out of (e.g. marketing emails), with its suppression list."""

    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    # What the purpose's systems look people up by. Only identifiers of these kinds go on its
    # list (data minimisation), and a subject with none of them cannot be suppressed in effect.
    identity_kinds = models.JSONField(
        _("looked up by"), default=list, blank=True, help_text=_("None ticked: every kind of identifier.")
    )

    class Meta:
        verbose_name = _("suppression list")  # as staff and the API call it
        ordering = ["name"]

    # The text the letters quote to the subject ("we no longer use your data for: …"), and so translated
    # (SuppressionPurposeTranslation). The description is for staff only.
    TRANSLATED_FIELDS = ("name",)

    def __str__(self) -> str:
        return self.name

    @property
    def identity_kind_labels(self) -> list:
        return [IdentityKind(kind).label for kind in self.identity_kinds]

    def uses(self, kind: str) -> bool:
        """Whether the purpose's systems look people up by identifiers of this kind."""
        return not self.identity_kinds or kind in self.identity_kinds


class SuppressionPurposeTranslation(TextTranslation):
    """A suppression list's name in one of the site's other languages (see SourceSystemTranslation): the
    completion letter tells the subject, in their language, what their data is no longer used for."""

    ITEM_FIELD = "purpose"

    purpose = models.ForeignKey(SuppressionPurpose, on_delete=models.CASCADE, related_name="translations")
    language = models.CharField(max_length=8, choices=settings.LANGUAGES)
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ["purpose", "language"]
        constraints = [
            models.UniqueConstraint(fields=["purpose", "language"], name="unique_suppression_purpose_translation")
        ]

    def __str__(self) -> str:
        return f"{self.purpose} ({self.language})"


class SuppressionEntry(models.Model):
    """An identifier that must not be used for a purpose: added by an objection, a consent
    withdrawal or a limit-use request. Kept after the request is purged: that is its point."""

    purpose = models.ForeignKey(SuppressionPurpose, on_delete=models.PROTECT, related_name="entries")
    kind = models.CharField(max_length=32, choices=IdentityKind)
    value = models.CharField(max_length=254)
    right = models.CharField(max_length=32, choices=RequestType)
    request = models.ForeignKey(PrivacyRequest, null=True, blank=True, on_delete=models.SET_NULL, related_name="suppressions")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = _("suppression entries")
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["purpose", "kind", "value"], name="unique_suppression")]
        indexes = [models.Index(fields=["purpose", "created_at", "id"], name="suppression_purpose_time_idx")]


class CoveredPurpose(models.Model):
    """A purpose whose suppression list a right asked for covers, as staff read the subject's words (the
    RequestedRight's objection_processing, consent_withdrawn, direct_marketing): free text, which no rule can
    match to the lists. The right is answered only once the subject is on each such list, or staff recorded why
    they cannot be (actions.completion_blockers); the letter tells the subject which (certificate.outcome_summary)."""

    right = models.ForeignKey(RequestedRight, on_delete=models.CASCADE, related_name="covered_purposes")
    purpose = models.ForeignKey(SuppressionPurpose, on_delete=models.PROTECT, related_name="+")
    # When the subject's verified identifiers were put on the list for this right (suppression.suppress).
    applied_at = models.DateTimeField(null=True, blank=True)
    # Why the list could not be applied, in the subject's language: the letter quotes it.
    not_applied_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["purpose__name"]
        constraints = [models.UniqueConstraint(fields=["right", "purpose"], name="one_cover_per_right_and_purpose")]

    def __str__(self) -> str:
        return f"{self.right}: {self.purpose}"
