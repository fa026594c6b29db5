"""The user id type. It lives here, at the bottom of the layers that handle user ids,
because `virtual_users.id` hands them out and every layer above names them."""

from __future__ import annotations

from typing import NewType

UserId = NewType("UserId", int)
