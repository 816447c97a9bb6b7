"""python3 manage.py ensure_user USERNAME, the password in the environment
(DJANGO_USER_PASSWORD, never on the command line): creates the user or sets
the password; prints created, updated or unchanged."""

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create a user, or set its password, from DJANGO_USER_PASSWORD."

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, **options):
        password = os.environ["DJANGO_USER_PASSWORD"]
        user, created = get_user_model().objects.get_or_create(username=options["username"])
        if not created and user.check_password(password):
            self.stdout.write("unchanged")
            return
        user.set_password(password)
        user.save()
        self.stdout.write("created" if created else "updated")
