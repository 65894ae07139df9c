"""The demo's input: a generated report, cut into chunks that mappers summarize.

:func:`sample_report` writes a deterministic incident review of a fictional delivery
company (title, 10-14 ``## `` sections, paragraphs of varied sentences). :func:`chunk_text`
cuts a text into chunks of about ``target_words`` words on section, paragraph and sentence
boundaries. :func:`overlapping_inputs` makes several inputs that share most of their
sections, so that mappers working on them meet many identical chunks: the work memgang's
compute-once memory lets them do once.

Chunking is per section: a section's chunks depend only on that section's text, never on
what comes before it, so the same section yields the same chunks in every input.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from memgang.demo.summarizers import split_sentences

__all__ = ["chunk_text", "overlapping_inputs", "sample_report"]


def _words(text: str) -> int:
    return len(text.split())


# --------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------

_COMPANY_NAMES = ("Halvorsen", "Brightwater", "Kestrel", "Marlowe", "Aldercrest", "Tamsin")
_COMPANY_KINDS = ("Freight", "Logistics", "Parcel", "Couriers")
_PRODUCTS = ("RouteWise", "Waypoint", "Dispatchly", "Harbor", "Lanemark")
_SYSTEMS = (
    "the order routing service",
    "the dispatch planner",
    "the route assignment service",
    "the shipment intake service",
)
_COMPONENTS = (
    "the message broker",
    "the primary Postgres cluster",
    "the session cache",
    "the API gateway",
    "the search indexer",
    "the billing exporter",
    "the job scheduler",
    "the feature flag service",
    "the geocoding proxy",
)
_TEAMS = (
    "the platform team",
    "the data infrastructure team",
    "the dispatch team",
    "the networking group",
    "the release engineering team",
    "the mobile team",
)
_PEOPLE = (
    "Priya Raman",
    "Tomasz Wieczorek",
    "Amara Osei",
    "Lucas Ferreira",
    "Hannah Lindqvist",
    "Kenji Watanabe",
    "Sofia Marchetti",
    "Daniel Okafor",
    "Ines Duarte",
    "Marek Novak",
    "Chloe Bernard",
    "Ravi Menon",
    "Samuel Adeyemi",
    "Grace O'Neill",
)
_ROLES = (
    "the database lead",
    "a platform engineer",
    "the head of customer operations",
    "the dispatch team lead",
    "a senior support agent",
    "the director of engineering",
    "a release engineer",
    "the mobile team lead",
)
_CONSULTANT = ("Dr. Elena Petrova", "an external reliability consultant")
_METRICS = (
    "p99 latency",
    "the route creation success rate",
    "queue depth",
    "the error rate",
    "replication lag",
    "connection pool utilisation",
    "thread pool saturation",
)
_REGIONS = ("the Nordics", "the Benelux countries", "Central Europe", "the UK", "Iberia")
_CUSTOMERS = (
    "Bramble Grocers",
    "Ostwind Pharmacy",
    "Kettering Home Supply",
    "Lumen Outdoor",
    "Sorrel and Finch",
    "Tarn Valley Dairy",
    "Pinecrest Hardware",
    "Marisol Foods",
)
_COMPETITORS = ("Corvid Logistics", "Parcelwise", "Northline Transport", "Swiftlane")
_QUARTERS = ("the first quarter", "the second quarter", "the third quarter", "the last quarter")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "September")
_ORDINALS = ("second", "third", "fourth")

# --------------------------------------------------------------------------------------
# Sentence templates, by section. Slots are filled by _Slots.
# --------------------------------------------------------------------------------------

# Sentences that fit any section; each is used at most once per report.
_GENERIC = (
    "{person} pointed out that the same pattern appears in other services owned by {team}.",
    "We have checked whether {component} has the same weakness, and it does not.",
    "The numbers in this section come from the request logs of {system} and may be revised.",
    "{person_role} reviewed this section before it was published.",
    "In a follow-up interview, {person} described the first {small} minutes as confusing but calm.",
    "These figures exclude {region}, where traffic had already been moved for maintenance.",
    "Further detail is in the incident channel archive and in ticket OPS-{ticket}.",
    "Several secondary systems (e.g. {component}) recovered on their own once load fell.",
    "{consultant_role} compared our account with the raw logs and found it accurate.",
    "It is worth repeating that {team} followed the process; the process allowed the failure.",
    "A similar question came up for {component}, and {person} has taken it as a follow-up.",
    "Graphs of {metric} for the whole incident are attached to ticket OPS-{ticket}.",
    "When asked what surprised them most, {person} pointed to how quickly {metric} moved.",
    "The figures above were cross-checked with {team} and agree to within {small} percent.",
)

# Composed sentences, "<attribution> <finding>.", for detail beyond a section's own lines.
_ATTRIBUTIONS = (
    "{person} noted that",
    "The request logs show that",
    "In the post-incident survey, {person} said that",
    "{team_cap} confirmed that",
    "A later analysis by {team} found that",
    "{person_role} observed that",
    "On the bridge call, {person} reported that",
    "Looking back, {person} felt that",
    "Data from {component} suggests that",
    "According to {person},",
    "Notes from the bridge call show that",
    "{person} later wrote that",
    "The post-incident survey suggests that",
    "Several responders agreed that",
)
_FINDINGS = (
    "{metric} in {region} stayed above its threshold for {minutes} minutes",
    "most of the retries came from older versions of the driver app",
    "{component} absorbed the extra load without errors",
    "the first {small} minutes were spent on the wrong hypothesis",
    "{pct} of the failed requests were retried at least three times",
    "depots in {region} were hit hardest because their dispatch window opens earliest",
    "the warning signs were visible in {metric} well before the first page",
    "the backlog peaked at {count} requests shortly before the rollback",
    "nobody on the call had changed {system} in the previous month",
    "{customer} had switched to manual dispatch by the time the incident was declared",
    "the health checks of {system} were too strict for a service under heavy load",
    "the capacity plan assumed a pool several times larger than the one deployed",
    "{metric} returned to normal within {small} minutes of the rollback",
    "the escalation list in the runbook was {months} months out of date",
    "drivers in {region} lost about {minutes} minutes of their shift on average",
    "the same configuration had run in the staging environment without any problem",
    "{team} could have rolled back sooner with a one-click rollback",
    "traffic from {customer} alone reached {mult} times its usual level during the retries",
    "the incident channel received {count} messages in the first hour",
    "{component} logged warnings about slow queries {small} minutes before the outage",
    "a smaller pool had been proposed for {component} as well but was never deployed",
    "support could have answered most tickets with a single prepared message",
    "the dashboards for {system} were accurate but had no link from the alert",
    "the mobile app showed a generic error instead of telling drivers to wait",
    "the rollback could have started {minutes} minutes earlier had the deploy been suspected",
    "{customer} reported the problem before any of our own alerts fired",
    "the connection errors were logged at debug level and therefore hidden by default",
    "the load balancer removed {small} healthy instances during the worst minutes",
    "depot staff in {region} kept working from printed manifests of the previous day",
    "the pool setting had no comment explaining why it had its value",
    "two other services share the same configuration template as {system}",
    "the canary instances never reached more than {pct} of their pool limit",
    "engineers joining the call late asked for the same context again and again",
    "the status page update was drafted in {small} minutes but waited for approval",
    "{team} had flagged the configuration template as fragile in an earlier review",
    "the on-call handbook says nothing about pausing deploys during an incident",
    "cold caches after the rollback added about {small} minutes to the recovery",
    "almost all of the cost came from the first hour of the outage",
    "customers who received a personal call were less likely to ask for credits",
    "the alert thresholds for {metric} were last changed {months} months ago",
    "a load test at production scale would have shown the problem within minutes",
    "the retry storm ended on its own once the service began answering again",
)

# Each section's own sentences; the first one opens the section.
_SECTIONS: dict[str, tuple[str, ...]] = {
    "Executive Summary": (
        "On {date}, {company} suffered a {duration}-minute outage of {product}, the platform "
        "that plans and tracks its deliveries.",
        "For most of that time, {pct} of route requests failed and the rest were served slowly.",
        "The immediate cause was {cause}.",
        "Roughly {count} shipments were delayed, and {customer} was among the customers who "
        "escalated.",
        "Service was fully restored at {end_time} UTC, after {team} rolled back the change and "
        "drained the backlog.",
        "No data was lost, but {count} orders had to be re-dispatched by hand.",
        "This review describes what happened, why it happened, and the actions we have agreed "
        "on to prevent it from happening again.",
        "The incident was raised to severity one {small} minutes after it was declared, when "
        "{metric} crossed its paging threshold.",
        "The direct cost is estimated at {money}, most of it in service credits and overtime.",
        "The failure was not caused by a bug in the code but by a setting nobody checked.",
        "Customers in {region} were affected first, and every region within minutes.",
        "We have already made the two most urgent fixes; the rest are scheduled.",
    ),
    "Background": (
        "{product} handles route planning, driver dispatch and delivery tracking for {company} "
        "in {region}.",
        "{system_cap} sits between the order intake API and the dispatch engine, and every new "
        "shipment passes through it.",
        "At peak, the platform processes about {count} requests per minute, most of them during "
        "the morning dispatch window.",
        "{team_cap} owns {system}, while {component} is run by a separate group.",
        "The service moved to its current cluster {months} months ago and had run without a "
        "major incident since.",
        "Capacity is reviewed every quarter, and the last review judged {component} to have "
        "ample headroom.",
        "Most customers integrate through the public API, but larger accounts such as "
        "{customer} also receive a nightly batch export.",
        "Like most of the platform, {system} is deployed several times a week through the "
        "standard release pipeline.",
        "Drivers use a mobile app that fetches the day's route from {system} before leaving "
        "the depot.",
        "The platform has grown quickly: it handles {pct} more shipments than a year ago.",
        "{system_cap} keeps a pool of database connections that its workers share.",
        "On-call duty for {system} rotates weekly among {small} engineers.",
    ),
    "Detection and Alerting": (
        "The first alert fired {small} minutes after the deploy, later than our target of "
        "five minutes.",
        "The alert on {metric} is tuned for sustained load, so a sharp rise in a single region "
        "went unnoticed at first.",
        "Customer reports, not monitoring, were the first sign of trouble for {team}.",
        "Our synthetic checks exercise the read path of {system} but not the path that "
        "creates new routes.",
        "Dashboards showed the problem clearly, but nobody was watching them during the "
        "morning handover.",
        "{person} noted that the paging policy sent the first alert to a chat channel rather "
        "than to a phone.",
        "Had the alert on {metric} paged at its warning level, detection would have been "
        "about {small} minutes sooner.",
        "The anomaly detector flagged {metric} as unusual but at a priority nobody is paged for.",
        "Nothing in our monitoring watches the number of free connections in the pool.",
        "The health checks kept reporting success until the service stopped answering them.",
    ),
    "Customer Impact": (
        "{count} deliveries left the depot late, and {count} were moved to the following day.",
        "{customer} reported that {pct} of its same-day orders missed their promised window.",
        "Drivers in {region} waited an average of {minutes} minutes for their routes to load.",
        "Support received {count} tickets during the incident, roughly {mult} times a normal "
        "morning.",
        "Some customers retried their requests again and again, which added load at the worst "
        "possible moment.",
        "The public status page was updated {small} minutes into the incident, later than "
        "customers expected.",
        "Enterprise accounts such as {customer} were called by their account managers the same "
        "afternoon.",
        "Smaller merchants, who rely on the self-service dashboard, saw error messages that did "
        "not explain what was wrong.",
        "In {region}, {pct} of the day's deliveries arrived outside their promised window.",
        "No shipments were lost, and no customer data was exposed at any point.",
        "The dispatch delays rippled into the afternoon, when drivers ran out of hours.",
        "Several customers asked whether they should expect the same problem again.",
    ),
    "Root Cause Analysis": (
        "The root cause was {cause}.",
        "The change had been reviewed and tested, but the test environment runs with a "
        "fraction of production traffic.",
        "Under real load, {system} exhausted its connections within {small} minutes, and "
        "requests began to queue.",
        "Each queued request held a worker thread while it waited, so the service stopped "
        "answering its health checks.",
        "The load balancer then removed instances from rotation, concentrating traffic on the "
        "ones that remained.",
        "This feedback loop explains why the outage spread from {region} to every region "
        "within minutes.",
        "Nothing in the deploy pipeline compared the new configuration with the capacity plan.",
        "The same setting exists in {component}, where it is documented; in {system} it was not.",
        "The setting was lowered to reduce the load on the database during a migration that "
        "had finished weeks earlier.",
        "Reverting the setting removed the symptom at once, which confirms the diagnosis.",
        "We found no evidence that the database itself was slow or unhealthy.",
    ),
    "Contributing Factors": (
        "The deploy went out at the start of the morning dispatch window, when traffic is at "
        "its highest.",
        "The canary stage ran for only {small} minutes, too short to see the pool run dry.",
        "Retry logic in the mobile app multiplied the load on {system} by roughly {mult} times.",
        "The runbook for {system} still described the architecture from before the migration.",
        "Two of the engineers most familiar with {component} were on leave that week.",
        "Alert thresholds had not been revisited since traffic grew by {pct} last year.",
        "The rollback procedure requires a manual approval that took {small} minutes to obtain.",
        "The capacity plan for {system} lived in a spreadsheet that the pipeline cannot read.",
        "Load during the incident was higher than usual because of a regional promotion.",
        "The change was one line in a large pull request, which made it easy to miss.",
    ),
    "Response and Recovery": (
        "{lead} took the role of incident commander and asked {oncall} to investigate {system}.",
        "The first hypothesis, a failure in {component}, cost the team about {small} minutes.",
        "Once the deploy was identified as the trigger, the rollback itself took {small} minutes.",
        "{team_cap} throttled the order intake API so that the backlog could drain without "
        "overwhelming the database.",
        "{person} wrote a script to re-dispatch the {count} orders that had been accepted but "
        "never routed.",
        "Recovery was slowed by cold caches, which took another {small} minutes to warm up.",
        "By the end of the day, every delayed shipment had been delivered or rescheduled with "
        "the customer's agreement.",
        "{oncall} kept a running log of actions in the incident channel, which made this "
        "review much easier to write.",
        "The order intake API was reopened gradually over {small} minutes to avoid a second spike.",
        "Depot managers were told when it was safe to send drivers out again.",
    ),
    "Communication": (
        "The incident channel had {people} participants at its peak, which made it hard to follow.",
        "Customer operations drafted the first status page update, and {lead} approved it "
        "{small} minutes later.",
        "Account managers called {customer} directly before noon.",
        "Internal updates went out every {interval} minutes, as the incident process requires.",
        "Several teams asked for updates in private messages, which pulled responders away "
        "from the bridge call.",
        "The final customer notice explained the cause in plain language and listed the "
        "actions we are taking.",
        "{person} noted that our templates for customer notices assume a partial outage, not a "
        "complete one.",
        "Drivers heard about the outage from their depot managers before any official message "
        "reached them.",
        "The bridge call worked well once a scribe was appointed to record decisions.",
        "Our messages to customers promised updates and kept that promise.",
    ),
    "What Went Well": (
        "The rollback worked the first time, and no data had to be restored from backups.",
        "{oncall} acknowledged the page within {small} minutes, well inside the target.",
        "Customer operations set up a dedicated queue for incident tickets without being asked.",
        "The decision to throttle intake prevented a second failure in {component}.",
        "Engineers from {team} joined the call quickly and offered help without adding noise.",
        "Good logging in {system} made the connection errors easy to find once someone looked.",
        "Depot managers in {region} switched to paper manifests and kept {pct} of their "
        "deliveries on time.",
        "The incident commander kept the call focused and cut off side discussions early.",
        "Nobody tried a risky fix under pressure; every change was announced first.",
    ),
    "What Went Poorly": (
        "We took {minutes} minutes to connect the outage to the deploy, although the timing "
        "was obvious in hindsight.",
        "The status page lagged behind what customers could already see for themselves.",
        "The runbook for {system} pointed to dashboards that no longer exist.",
        "Too many people joined the bridge call, and decisions were repeated for late joiners.",
        "Nobody owned the question of whether to pause other deploys, so two unrelated changes "
        "went out during the incident.",
        "The escalation path to {team} was out of date and paged someone who had changed teams.",
        "Support agents had no prepared answer for customers and improvised for the first "
        "{small} minutes.",
        "The first hypothesis was held too long, even when the evidence pointed elsewhere.",
        "Responders lacked access to the deploy history and had to ask for it.",
    ),
    "Market and Business Context": (
        "{company} competes with {competitor} for mid-sized retail customers in {region}.",
        "Same-day delivery has grown by {pct} a year, and reliability is the reason most "
        "customers give for choosing us.",
        "{competitor} suffered a similar outage last year and lost a major account shortly "
        "afterwards.",
        "Analysts expect consolidation in the regional logistics market over the next two years.",
        "Our largest customers are negotiating renewals in {quarter}, and several have asked "
        "about this incident.",
        "Service credits are contractual for enterprise accounts but discretionary for smaller "
        "merchants.",
        "A reputation for dependable morning dispatch is worth more to us than any single feature.",
        "Growth in {region} depends on winning grocery chains, for whom late deliveries mean "
        "spoiled stock.",
        "{competitor} advertises its uptime record prominently in every sales pitch.",
        "Retail customers plan their staffing around our delivery windows.",
    ),
    "Financial Impact": (
        "Service credits owed under enterprise contracts total about {money}.",
        "Overtime for drivers and depot staff added roughly {money} in direct costs.",
        "We estimate lost revenue from cancelled same-day orders at {money}.",
        "Finance has not yet included the cost of churn, which is harder to measure and may be "
        "larger.",
        "The hours engineers spent on the incident and on this review add up to about {people} "
        "person-days.",
        "Taken together, the outage cost more than the whole reliability budget for {quarter}.",
        "{customer} has asked for a credit of {money}, which is being negotiated.",
        "The cost of the planned actions is small compared with the cost of the outage.",
        "Insurance does not cover losses from outages that we cause ourselves.",
    ),
    "Prior Incidents": (
        "This is the {ordinal} incident involving {system} this year, although the earlier "
        "ones were minor.",
        "In {month}, a smaller configuration error in {component} caused {minutes} minutes of "
        "degraded service.",
        "That review recommended automated configuration checks, which were planned but never "
        "scheduled.",
        "Across the platform, {people} incidents were declared in the last twelve months, "
        "{small} of them at severity one.",
        "Most of them began with a change rather than with a hardware failure or a traffic spike.",
        "An incident in {month} involving {component} was resolved by the same kind of rollback.",
        "None of the earlier incidents led to customer credits.",
        "The trend is improving overall, which makes this outage more disappointing.",
    ),
    "Action Items": (
        "{team_cap} will add a pre-deploy check that compares pool settings with the capacity "
        "plan, due in {weeks} weeks.",
        "{person} will extend the canary stage of {system} to at least {interval} minutes of "
        "real traffic.",
        "The mobile team will add jittered exponential backoff to the app's retry logic.",
        "{team_cap} will add a synthetic check for route creation, not only for route lookups.",
        "Customer operations will prepare status page templates for a complete outage, due in "
        "{weeks} weeks.",
        "The alert on {metric} will page at its warning level during the morning dispatch window.",
        "{person} will rewrite the runbook for {system} and walk the on-call rotation through it.",
        "Each action has an owner and a due date, and progress will be reviewed in the weekly "
        "operations meeting.",
        "{team_cap} will add an alert on free connections in every service that pools them.",
        "{person} will add the deploy history to the incident dashboard.",
    ),
    "Lessons Learned": (
        "Configuration is code, and it deserves the same review, testing and capacity checks.",
        "A canary that is shorter than the time a resource takes to run out cannot catch the "
        "failure.",
        "Retries without backoff turn a slowdown into an outage.",
        "Customers forgive outages more readily than they forgive silence.",
        "The people who know a system best are not always on call for it, so runbooks must "
        "carry what they know.",
        "Timing is evidence: when an outage starts minutes after a deploy, roll back first and "
        "investigate second.",
        "We will revisit this review in {quarter} to check that the actions made a difference.",
        "A good incident process makes a bad morning shorter, but it cannot prevent it.",
        "Small settings deserve the same attention as large features.",
    ),
}
# The sections every report has; the others are drawn by seed. Order follows _SECTIONS.
_CORE = (
    "Executive Summary",
    "Background",
    "Timeline",
    "Root Cause Analysis",
    "Customer Impact",
    "Response and Recovery",
    "Action Items",
    "Lessons Learned",
)
_ORDER = (
    "Executive Summary",
    "Background",
    "Timeline",
    "Detection and Alerting",
    "Root Cause Analysis",
    "Contributing Factors",
    "Customer Impact",
    "Response and Recovery",
    "Communication",
    "What Went Well",
    "What Went Poorly",
    "Prior Incidents",
    "Market and Business Context",
    "Financial Impact",
    "Action Items",
    "Lessons Learned",
)
# The timeline, in order; each event happens at the next of a sorted set of times.
_TIMELINE_EVENTS = (
    "At {time} UTC, a routine deploy of {system} reached the first production region.",
    "At {time} UTC, {metric} began to climb in {region}, though no alert fired yet.",
    "At {time} UTC, the first ticket arrived from {customer}, reporting that drivers could "
    "not load their routes.",
    "At {time} UTC, {oncall} was paged and acknowledged the alert.",
    "By {time} UTC, {pct} of requests to {system} were timing out.",
    "At {time} UTC, {lead} declared an incident and opened a bridge call with {team}.",
    "At {time} UTC, the team suspected {component} and spent several minutes ruling it out.",
    "At {time} UTC, {person} proposed rolling back the deploy, and the rollback began.",
    "At {time} UTC, error rates started to fall as the rollback completed.",
    "At {time} UTC, the backlog of {count} queued requests had been drained.",
    "At {time} UTC, the incident was marked resolved; monitoring continued for another hour.",
)
# Things that went on between timeline events: no time of their own.
_TIMELINE_FILLERS = (
    "Meanwhile, {team} checked {component} and found nothing unusual.",
    "Support agents began tagging incoming tickets so that they could be answered in bulk.",
    "{person} posted a summary of what was known so far in the incident channel.",
    "Depot managers in {region} started calling drivers to tell them to wait.",
    "{person} shared a graph of {metric} on the bridge call.",
    "Several engineers from {team} joined the call to offer help.",
    "The status page still showed all systems as operational.",
    "{lead} asked for a list of every change deployed that morning.",
)


# Slots drawn afresh at each use: from a list, or an integer from a range.
_PICKS: dict[str, Sequence[str]] = {
    "person": _PEOPLE,
    "team": _TEAMS,
    "team_cap": tuple(team[0].upper() + team[1:] for team in _TEAMS),
    "component": _COMPONENTS,
    "metric": _METRICS,
    "region": _REGIONS,
    "customer": _CUSTOMERS,
    "competitor": _COMPETITORS,
    "quarter": _QUARTERS,
    "month": _MONTHS,
    "ordinal": _ORDINALS,
    # each person keeps one role throughout
    "person_role": tuple(f"{p}, {r}," for p, r in zip(_PEOPLE, _ROLES * 2, strict=False)),
}
_RANGES: dict[str, tuple[int, int]] = {
    "count": (120, 4800),
    "people": (14, 75),
    "small": (3, 19),
    "minutes": (8, 55),
    "mult": (3, 9),
    "months": (4, 22),
    "weeks": (2, 8),
}


class _Slots(dict[str, str]):
    """Template slots: fixed facts of the report, and fresh random picks for the rest."""

    def __init__(self, rng: random.Random, fixed: dict[str, str]) -> None:
        super().__init__(fixed)
        self.rng = rng

    def __missing__(self, key: str) -> str:
        rng = self.rng
        if key in _PICKS:
            return rng.choice(_PICKS[key])
        if key in _RANGES:
            low, high = _RANGES[key]
            return f"{rng.randint(low, high):,}"
        if key == "ticket":
            return str(rng.randint(1000, 9999))
        if key == "pct":
            return f"{rng.uniform(4.0, 48.0):.1f}%"
        if key == "money":
            return f"${rng.randint(40, 980)},000"
        if key == "interval":
            return str(rng.choice((15, 20, 30)))
        raise KeyError(key)


def _fixed_facts(rng: random.Random) -> dict[str, str]:
    """The facts that stay the same throughout one report."""
    system = rng.choice(_SYSTEMS)
    lead, oncall = rng.sample(_PEOPLE, 2)
    start = rng.randint(6 * 60 + 30, 8 * 60)  # minutes after midnight
    duration = rng.randint(70, 140)
    end = start + duration
    pool_old = rng.choice((120, 160, 200, 240))
    return {
        "company": f"{rng.choice(_COMPANY_NAMES)} {rng.choice(_COMPANY_KINDS)}",
        "product": rng.choice(_PRODUCTS),
        "system": system,
        "system_cap": system[0].upper() + system[1:],
        "date": f"{rng.choice(('Tuesday', 'Wednesday', 'Thursday'))} {rng.randint(3, 27)} "
        f"{rng.choice(_MONTHS)}",
        "duration": str(duration),
        "start": str(start),
        "end_time": f"{end // 60:02d}:{end % 60:02d}",
        "lead": lead,
        "oncall": oncall,
        "consultant_role": f"{_CONSULTANT[0]}, {_CONSULTANT[1]},",
        "cause": f"a configuration change that cut the database connection pool of {system} "
        f"from {pool_old} to {pool_old // 10} connections",
    }


def _fill(template: str, slots: _Slots) -> str:
    return template.format_map(slots)


def _paragraphs(sentences: list[str], rng: random.Random) -> list[str]:
    """Group sentences into paragraphs of three to six sentences."""
    paragraphs: list[str] = []
    while sentences:
        size = rng.randint(3, 6)
        if len(sentences) - size < 2:  # no one- or two-sentence tail paragraph
            size = len(sentences)
        paragraphs.append(" ".join(sentences[:size]))
        sentences = sentences[size:]
    return paragraphs


class _Deck:
    """Draws from ``cards`` in a shuffled order, every card once before any repeats."""

    def __init__(self, cards: Sequence[str], rng: random.Random) -> None:
        self.cards = cards
        self.rng = rng
        self.pile: list[str] = []

    def draw(self) -> str:
        if not self.pile:
            self.pile = list(self.cards)
            self.rng.shuffle(self.pile)
        return self.pile.pop()


def _section_prose(
    templates: Sequence[str],
    budget: int,
    slots: _Slots,
    seen: set[str],
    generic: list[str],
    composed: tuple[_Deck, _Deck],
) -> list[str]:
    """About ``budget`` words: the section's opening sentence, then its other sentences in
    a random order, mixed with composed findings (from the ``composed`` decks of
    attributions and findings) and general remarks (each once per report, popped from
    ``generic``). No sentence appears twice in a report."""
    rng = slots.rng
    own = list(templates[1:])
    rng.shuffle(own)
    sentences = [_fill(templates[0], slots)]
    seen.add(sentences[0])
    words = _words(sentences[0])
    misses = 0
    while words < budget and misses < 100:
        roll = rng.random()
        if own and roll < 0.6:
            template = own.pop()
        elif generic and roll < 0.75:
            template = generic.pop()
        else:
            attributions, findings = composed
            template = f"{attributions.draw()} {findings.draw()}."
        sentence = _fill(template, slots)
        if sentence in seen:
            misses += 1
            continue
        seen.add(sentence)
        sentences.append(sentence)
        words += _words(sentence)
    return sentences


def _timeline(slots: _Slots, seen: set[str]) -> list[str]:
    """Every timeline event in order at increasing times, with each filler once between."""
    rng = slots.rng
    start, duration = int(slots["start"]), int(slots["duration"])
    offsets = [
        -rng.randint(3, 9),
        *sorted(rng.sample(range(1, duration), len(_TIMELINE_EVENTS) - 2)),
        duration,
    ]
    sentences: list[str] = []
    for template, offset in zip(_TIMELINE_EVENTS, offsets, strict=True):
        minute = start + offset
        slots["time"] = f"{minute // 60:02d}:{minute % 60:02d}"
        sentences.append(_fill(template, slots))
    del slots["time"]
    # Fillers go between events, never before the deploy or after the resolution.
    for template in _TIMELINE_FILLERS:
        sentences.insert(rng.randint(1, len(sentences) - 1), _fill(template, slots))
    seen.update(sentences)
    return sentences


def sample_report(words: int = 6000, seed: int = 7) -> str:
    """A generated incident review of a fictional delivery company, about ``words`` long.

    Markdown: a ``# `` title, a short preamble, then 10 to 14 ``## `` sections (more for
    longer reports) of paragraphs. The same ``words`` and ``seed`` always give the same
    text; different seeds give different companies, people, numbers and section choices.
    The report never has fewer than 10 sections, so a very small ``words`` comes out longer.
    """
    if words < 1:
        raise ValueError(f"words must be at least 1, got {words}")
    rng = random.Random(seed)
    slots = _Slots(rng, _fixed_facts(rng))
    count = min(14, max(10, round(words / 500)))
    optional = [name for name in _ORDER if name not in _CORE]
    chosen = set(_CORE) | set(rng.sample(optional, count - len(_CORE)))
    headings = [name for name in _ORDER if name in chosen]

    title = _fill("# Incident Review: {product} Outage at {company}", slots)
    preamble = _fill(
        "Prepared by the reliability group of {company} after the outage of {date}. This is "
        "a blameless review: it describes systems and decisions, not individual fault. "
        "{lead} led the response and edited this document.",
        slots,
    )
    blocks = [title, preamble]
    seen: set[str] = set()
    timeline = _timeline(slots, seen)
    # The timeline is as long as its events; the other sections share the rest.
    rest = words - _words(title) - _words(preamble) - sum(map(_words, timeline))
    budget = max(0, rest) // (count - 1)
    generic = list(_GENERIC)
    rng.shuffle(generic)
    composed = (_Deck(_ATTRIBUTIONS, rng), _Deck(_FINDINGS, rng))
    for heading in headings:
        if heading == "Timeline":
            sentences = timeline
        else:
            section_budget = round(budget * rng.uniform(0.8, 1.2)) - _words(heading) - 1
            sentences = _section_prose(
                _SECTIONS[heading], section_budget, slots, seen, generic, composed
            )
        blocks.append(f"## {heading}")
        blocks.extend(_paragraphs(sentences, rng))
    return "\n\n".join(blocks) + "\n"


# --------------------------------------------------------------------------------------
# Chunking
# --------------------------------------------------------------------------------------

_HEADING = re.compile(r"#{1,6}\s")


def _sections(text: str) -> list[list[str]]:
    """The paragraphs of ``text``, grouped by section.

    A section starts at each Markdown heading line (the heading is its first paragraph);
    text before the first heading is a section of its own. Paragraphs are separated by
    blank lines; trailing whitespace is dropped from every line.
    """
    sections: list[list[str]] = []
    lines: list[str] = []

    def end_paragraph() -> None:
        if lines:
            if not sections:
                sections.append([])
            sections[-1].append("\n".join(lines))
            lines.clear()

    for raw in text.splitlines():
        line = raw.rstrip()
        if _HEADING.match(line):
            end_paragraph()
            sections.append([line])
        elif line.strip():
            lines.append(line)
        else:
            end_paragraph()
    end_paragraph()
    return sections


def _pack(pieces: list[str], target_words: int, sep: str) -> list[str]:
    """Join consecutive ``pieces`` with ``sep`` into groups of at most ``target_words`` words,
    in order (a single longer piece stays whole)."""
    groups: list[str] = []
    group: list[str] = []
    size = 0
    for piece in pieces:
        words = _words(piece)
        if group and size + words > target_words:
            groups.append(sep.join(group))
            group, size = [], 0
        group.append(piece)
        size += words
    if group:
        groups.append(sep.join(group))
    return groups


def _sentence_groups(paragraph: str, target_words: int) -> list[str]:
    """Cut a long paragraph between sentences into pieces of at most ``target_words`` words
    (a single longer sentence stays whole)."""
    return _pack(split_sentences(paragraph), target_words, " ")


def _chunk_section(paragraphs: list[str], target_words: int) -> list[str]:
    pieces: list[str] = []
    for paragraph in paragraphs:
        if _words(paragraph) > target_words and not _HEADING.match(paragraph):
            pieces.extend(_sentence_groups(paragraph, target_words))
        else:
            pieces.append(paragraph)
    if len(pieces) > 1 and _HEADING.match(pieces[0]):  # a heading goes with what follows
        pieces[:2] = [f"{pieces[0]}\n\n{pieces[1]}"]
    return _pack(pieces, target_words, "\n\n")


def chunk_text(text: str, target_words: int = 250) -> list[str]:
    """Cut ``text`` into chunks of about ``target_words`` words, in order.

    Chunks never span two sections (a section starts at a Markdown heading line) and never
    cut a sentence: whole paragraphs are packed together up to ``target_words``; a
    paragraph longer than that is cut between sentences; a section heading stays with the
    text that follows it, and a single sentence longer than ``target_words`` stays whole.
    Paragraphs in a chunk are separated by a blank line.

    No word is lost or reordered: ``" ".join(chunk_text(t)).split() == t.split()``. The
    result is deterministic, and a section's chunks depend on nothing but its own text.
    """
    if target_words < 1:
        raise ValueError(f"target_words must be at least 1, got {target_words}")
    return [chunk for section in _sections(text) for chunk in _chunk_section(section, target_words)]


def overlapping_inputs(text: str, jobs: int) -> list[str]:
    """``jobs`` variants of ``text`` that share most of their sections.

    The first section (the title and preamble) is in every variant; of the sections after
    it, job ``i`` leaves out section ``i % n`` (``n`` = their number) and keeps the rest in
    order. Since chunking is per section (see :func:`chunk_text`), a section yields the
    same chunks in every variant that contains it, so with ``C = len(chunk_text(text, w))``
    and ``c_k`` the number of chunks of section ``k``:

    - the variants hold ``jobs * C - sum(c_(i % n) for i in range(jobs))`` chunks in all;
    - ``C`` of them are distinct when ``jobs >= 2`` (every section is left out of at most
      one variant in each round of ``n`` and kept by the others), and ``C - c_0`` when
      ``jobs == 1``;

    assuming, as in :func:`sample_report`, that no two sections have identical chunks.
    A text with fewer than two sections after the first has nothing to leave out: every
    variant is then the whole text. Variants are rebuilt from paragraphs, so blank-line
    runs and trailing spaces are normalized; their chunks are those of ``text``.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    sections = _sections(text)
    first, rest = sections[:1], sections[1:]
    variants: list[str] = []
    for job in range(jobs):
        kept = rest if len(rest) < 2 else rest[: job % len(rest)] + rest[job % len(rest) + 1 :]
        variants.append("\n\n".join(p for section in first + kept for p in section) + "\n")
    return variants
