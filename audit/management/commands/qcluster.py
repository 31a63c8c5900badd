import logging
import threading

from django.db import DatabaseError
from django_q.brokers import get_broker
from django_q.cluster import Cluster
from django_q.management.commands.qcluster import Command as DjangoQCommand
from django_q.scheduler import scheduler

from audit.outbox import relay_if_due
from siem.services import stream_if_behind

logger = logging.getLogger(__name__)

SCHEDULER_INTERVAL_SECONDS = 1.0


class Command(DjangoQCommand):
    help = (
        "Start the django-q2 worker cluster and the scheduler. The scheduler runs every second "
        "in this process (django-q2's own checks only every 30 s, too slow for exact expiry), "
        "and starts the alert relay whenever a delivery is due, and the SIEM sender whenever "
        "a stream is behind the audit chain."
    )

    def handle(self, *args, **options):
        # settings.Q_CLUSTER["scheduler"] is False, so the cluster's sentinel never schedules:
        # this loop is the one scheduler per qcluster process. Several processes may run it at
        # once; django-q2 locks due schedules with SELECT ... FOR UPDATE.
        cluster = Cluster()
        cluster.start()
        if options.get("run_once"):
            scheduler(broker=get_broker())
            cluster.stop()
            return
        broker = get_broker()
        pause = threading.Event()
        while cluster.sentinel.is_alive():
            scheduler(broker=broker)
            try:
                relay_if_due()
            except DatabaseError:
                logger.warning("could not look for due deliveries", exc_info=True)
            try:
                stream_if_behind()
            except DatabaseError:
                logger.warning("could not look for SIEM streams behind", exc_info=True)
            pause.wait(SCHEDULER_INTERVAL_SECONDS)
