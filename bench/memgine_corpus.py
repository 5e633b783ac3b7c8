"""Seeded generator of realistic random memgine facts and queries (shared by bench_memgine.py).

Bodies are 8-30 words: English glue words, a Zipf-distributed technical vocabulary and a long
tail of identifiers, numbers and made-up names, the way notes about a software project read.
Subjects come from a fixed vocabulary of area/aspect pairs. About 1% of facts are constraints.
"""

from __future__ import annotations

import random


def _words(text: str) -> list[str]:
    return text.split()


GLUE = _words(
    "the a an of to in on for with and or is are was be by at from that this it as not "
    "when after before should must can will only all every each no into over via than then"
)

TECH = _words(
    "auth login token session password credential oauth user account customer admin role "
    "permission policy access key secret certificate tls ssl https request response header "
    "cookie cache redis memcached database db sql postgres mysql sqlite index query table "
    "schema migration column row transaction lock deadlock replica shard backup restore "
    "snapshot volume disk storage bucket object file directory folder path upload download "
    "stream buffer queue kafka topic consumer producer message event webhook callback retry "
    "timeout latency throughput performance memory cpu thread process worker pool scheduler "
    "cron job task pipeline build deploy release rollout rollback canary staging production "
    "cluster node pod container docker kubernetes helm image registry network dns proxy "
    "gateway load balancer ingress service endpoint api route handler controller middleware "
    "client server socket websocket http grpc json yaml config setting preference option flag "
    "feature experiment metric dashboard alert log trace span monitor error exception panic "
    "crash failure bug issue regression test unit integration coverage lint format style "
    "review merge branch commit repository git tag version dependency package library "
    "module plugin extension script cli command shell terminal editor notebook kernel "
    "python rust typescript javascript golang java compiler runtime interpreter "
    "frontend backend mobile ios android browser chrome render layout component widget "
    "button form input validation email notification sms push invoice billing payment "
    "subscription plan price tax refund order cart checkout inventory product catalog search "
    "ranking recommendation model training inference embedding vector prompt context agent "
    "tool memory graph fact constraint rule limit quota rate budget cost region zone "
    "latency uptime incident outage postmortem oncall pager escalation ticket sprint "
    "roadmap deadline meeting team owner reviewer manager design document spec readme "
    "tutorial guide example sample fixture mock stub benchmark profile optimize refactor "
    "cleanup deprecate remove delete create update insert upsert patch rename move copy "
    "encrypt decrypt hash sign verify audit compliance privacy gdpr retention archive "
    "timezone date time locale unicode encoding utf8 parser serializer protocol schema "
    "weekly daily monthly nightly hourly tuesday friday morning evening"
)

SYL = _words("ka lo mi ne ru ta vi so pe da zu fo ga he ji ko lu ma no pi ra se ti vo wa xe yo ze")
AREAS = _words(
    "auth billing search payments checkout db infra frontend mobile api gateway notifications "
    "analytics ml ops security docs onboarding inventory reporting admin deploy ci storage "
    "cache queue email sso profile settings export import scheduler logging metrics"
)
ASPECTS = _words(
    "service api worker schema config policy limits ownership oncall release migration "
    "tests alerts dashboard client sdk cli jobs keys retention"
)


class Corpus:
    """Facts and queries drawn from one seeded generator (same seed, same corpus)."""

    def __init__(self, seed: int = 7, rare_words: int = 20000) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        rare: set[str] = set()
        while len(rare) < rare_words:
            rare.add("".join(rng.choice(SYL) for _ in range(rng.randint(2, 4))))
        self.rare = sorted(rare)
        self.subjects = [f"{a}-{b}" for a in AREAS for b in ASPECTS]
        rng.shuffle(self.subjects)
        self.tech_weights = [1.0 / (i + 1) ** 0.9 for i in range(len(TECH))]
        self.subject_weights = [1.0 / (i + 1) ** 0.7 for i in range(len(self.subjects))]

    def _word(self) -> str:
        rng = self.rng
        x = rng.random()
        if x < 0.33:
            return rng.choice(GLUE)
        if x < 0.78:
            return rng.choices(TECH, self.tech_weights)[0]
        if x < 0.95:
            return rng.choice(self.rare)
        return str(rng.randint(1, 5000))

    def fact(self) -> tuple[str, str, str]:
        """One ``(subject, body, kind)``."""
        rng = self.rng
        subject = rng.choices(self.subjects, self.subject_weights)[0]
        body = " ".join(self._word() for _ in range(rng.randint(8, 30)))
        kind = "constraint" if rng.random() < 0.01 else "pattern"
        return subject, body, kind

    def facts(self, n: int) -> list[tuple[str, str, str]]:
        return [self.fact() for _ in range(n)]

    def queries(self, n: int) -> list[str]:
        """Queries of 2-4 words: mostly technical words, some rare names, some glue words."""
        rng = self.rng
        out = []
        for _ in range(n):
            words = []
            for _ in range(rng.randint(2, 4)):
                x = rng.random()
                if x < 0.15:
                    words.append(rng.choice(GLUE))
                elif x < 0.8:
                    words.append(rng.choices(TECH, self.tech_weights)[0])
                else:
                    words.append(rng.choice(self.rare))
            out.append(" ".join(words))
        return out
