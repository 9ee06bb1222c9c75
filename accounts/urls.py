# The account and rep pages (/accounts/, /reps/) are served from territories/scenario_urls.py:
# who may see an account, who owns it and why are answered by territories' selectors and resolver,
# and accounts must not import territories (see territories/account_views.py).
urlpatterns: list = []
