from django.urls import path

from . import views

urlpatterns = [
    path("", views.page, name="page"),
    path("push-token/", views.push_token, name="push-token"),
    path("notify/", views.notify, name="notify"),
    path("release/", views.release_view, name="release"),
]
