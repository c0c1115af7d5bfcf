"""Tests against a real local Prefect server (one per session, shared by these modules)."""
