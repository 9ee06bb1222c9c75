from django.urls import path

from . import token_views

urlpatterns = [
    path("settings/tokens/", token_views.token_list, name="tokens"),
    path("settings/tokens/<int:pk>/revoke/", token_views.token_revoke, name="token-revoke"),
]
