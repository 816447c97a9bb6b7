"""python3 manage.py notify USERNAME TEXT: a note to a user's channel from
outside Apache (a cron job, a worker), with the same publisher."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from mod_wsgi_ws_sidecar import push

from live.views import MAX_TEXT, own_channel


class Command(BaseCommand):
    help = "Publish a note to a user's own notifications channel."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("text")

    def handle(self, *args, **options):
        user = get_user_model().objects.get(username=options["username"])
        position = push.publish(own_channel(user), {"text": options["text"][:MAX_TEXT]})
        self.stdout.write(position)
