"""Infrastructure the domain leans on: compiled queries, epoch SQL, search caches.

Nothing here knows a business rule; selectors and services use it to stay fast.
"""
