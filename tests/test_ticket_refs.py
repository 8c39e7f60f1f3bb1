"""Tests for connectors.ticket_refs: strict reference patterns and time parsing."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from connectors.ticket_refs import (
    TicketFetch, is_jira_key, is_servicenow_ref, parse_jira_time, parse_servicenow_utc, split_jira_keys,
    split_refs, split_servicenow_refs,
)


@pytest.mark.parametrize("key", ["OPS-1", "AB-123456789", "A1-7", "A_B-10", "ABCDEFGHIJ-42", "INDEV-6"])
def test_valid_jira_keys(key):
    assert is_jira_key(key)


@pytest.mark.parametrize("key", [
    "A-1",                 # project key too short
    "ABCDEFGHIJK-1",       # 11 characters: too long
    "SAMPLEPROJECT-1",     # real Jira 5 key (jira-ruby sample), longer than the strict pattern
    "ops-1", "Ops-1",      # lower case is not normalised
    "1OPS-1", "_OPS-1",    # must start with a letter
    "OPS-0", "OPS-01",     # no zero / leading zero issue numbers
    "OPS-1234567890",      # ten digits
    "OPS-1\n", " OPS-1", "OPS-1 ", "OPS -1",
    "OPS-1) OR project = X", "OPS-1,OPS-2", "OPS-1\"", "OPS-1'",
    "ＯＰＳ-1", "OPS-١",    # full-width letters, Arabic-Indic digit
    "", None, 12, b"OPS-1",
])
def test_invalid_jira_keys(key):
    assert not is_jira_key(key)


@pytest.mark.parametrize("ref", ["CHG0000001", "CHG1234567890", "1766f1de47410200e90d87e8dee490f6"])
def test_valid_servicenow_refs(ref):
    assert is_servicenow_ref(ref)


@pytest.mark.parametrize("ref", [
    "CHG123456", "CHG12345678901", "chg0000001", "INC0000001", "CHG0000001\n", "CHG0000001^ORactive=true",
    "CHG0000001,CHG0000002", "1766F1DE47410200E90D87E8DEE490F6", "1766f1de47410200e90d87e8dee490f",
    "1766f1de47410200e90d87e8dee490f6a", "1766f1de47410200e90d87e8dee490fg", "", None,
])
def test_invalid_servicenow_refs(ref):
    assert not is_servicenow_ref(ref)


def test_split_keeps_order_and_drops_duplicates():
    valid, invalid = split_jira_keys(["OPS-2", "bad", "OPS-1", "OPS-2", "bad", None])
    assert valid == ["OPS-2", "OPS-1"] and invalid == ["bad", "None"]
    valid, invalid = split_servicenow_refs(["CHG0000001", "x", "CHG0000001"])
    assert (valid, invalid) == (["CHG0000001"], ["x"])
    assert split_refs([], "jira") == ([], [])
    with pytest.raises(ValueError):
        split_refs(["OPS-1"], "remedy")


def test_ticket_fetch_defaults_are_independent():
    a, b = TicketFetch(), TicketFetch()
    a.tickets.append({})
    a.failed["x"] = "y"
    assert b.tickets == [] and b.failed == {} and b.raw == [] and b.invalid == []


def test_parse_jira_time():
    utc = timezone.utc
    assert parse_jira_time("2011-12-14T10:26:06.000+1300") == datetime(2011, 12, 13, 21, 26, 6, tzinfo=utc)
    assert parse_jira_time("2018-12-05T14:32:11.571+0300") == datetime(2018, 12, 5, 11, 32, 11, 571000,
                                                                       tzinfo=utc)
    assert parse_jira_time("2024-03-01T10:00:00Z") == datetime(2024, 3, 1, 10, tzinfo=utc)
    assert parse_jira_time("2024-03-01T10:00:00+00:00").tzinfo is utc
    assert parse_jira_time("2024-03-01") == datetime(2024, 3, 1, tzinfo=utc)
    assert parse_jira_time("2024-03-01", end_of_day=True) == datetime(2024, 3, 2, tzinfo=utc)
    for junk in (None, "", "2024-03-01T10:00:00", "yesterday", "2024-02-30", 1700000000):
        assert parse_jira_time(junk) is None


def test_parse_servicenow_utc():
    assert parse_servicenow_utc("2015-07-06 18:56:04") == datetime(2015, 7, 6, 18, 56, 4, tzinfo=timezone.utc)
    for junk in ("", None, "10/24/2023 7:07:31", "2015-07-06T18:56:04", "2015-07-06 18:56:04Z",
                 "2015-13-06 18:56:04"):
        assert parse_servicenow_utc(junk) is None
