from rest_framework.pagination import LimitOffsetPagination as _Base


class LimitOffsetPagination(_Base):
    """Limit/offset with a hard ceiling so one request cannot ask for the whole table."""

    default_limit = 100
    max_limit = 1000
