from __future__ import annotations

from django.db import models
from django.utils import timezone


class Heartbeat(models.Model):
    """The last time a periodic process proved it is alive (the scheduler, via a worker)."""

    name = models.CharField(max_length=100, unique=True)
    last_seen_at = models.DateTimeField()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} @ {self.last_seen_at:%Y-%m-%d %H:%M:%S}"

    @classmethod
    def beat(cls, name: str) -> Heartbeat:
        heartbeat, _ = cls.objects.update_or_create(name=name, defaults={"last_seen_at": timezone.now()})
        return heartbeat

    def age_seconds(self) -> float:
        return (timezone.now() - self.last_seen_at).total_seconds()
