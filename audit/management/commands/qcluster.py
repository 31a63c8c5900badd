import threading

from django_q.brokers import get_broker
from django_q.cluster import Cluster
from django_q.management.commands.qcluster import Command as DjangoQCommand
from django_q.scheduler import scheduler

SCHEDULER_INTERVAL_SECONDS = 1.0


class Command(DjangoQCommand):
    help = (
        "Start the django-q2 worker cluster and the scheduler. The scheduler runs every second "
        "in this process (django-q2's own checks only every 30 s, too slow for exact expiry)."
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
            pause.wait(SCHEDULER_INTERVAL_SECONDS)
