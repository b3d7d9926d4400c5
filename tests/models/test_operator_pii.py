"""PII scrubbing of what operators' real tickets hold (QA training #3): surnames with particles, titles,
salutations, agents' sign-offs, postal addresses and dates of birth; and the words that are not names."""

from __future__ import annotations

import pytest

from models.pii import ADDRESS, BIRTH_DATE, NAME, names_in, scrub_pii

N, A, B = NAME, ADDRESS, BIRTH_DATE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # surnames with particles
        ("Hello, this is Anna de Vries (my order is late).", f"Hello, this is {N} (my order is late)."),
        ("Hi, Pieter van den Berg here, where is my lamp?", f"Hi, {N} here, where is my lamp?"),
        ("My name is Ludwig von Mises.", f"My name is {N}."),
        ("I'm Jan ter Horst", f"I'm {N}"),
        ("This is Els ten Brink speaking", f"This is {N} speaking"),
        ("my name is Maria van der Linden and I want a refund", f"my name is {N} and I want a refund"),
        # titles: the title and the name become one placeholder
        ("I'm Mr. Smith", f"I'm {N}"),
        ("Mrs Jones called yesterday", f"{N} called yesterday"),
        ("Please ask Ms. Anna Berg", f"Please ask {N}"),
        ("Dr van der Linden ordered it", f"{N} ordered it"),
        # salutations
        ("Dear Sarah, your parcel was dispatched", f"Dear {N}, your parcel was dispatched"),
        ("Hi Sarah,\nyour refund is on its way.", f"Hi {N},\nyour refund is on its way."),
        ("Hello Tom", f"Hello {N}"),
        ("Good morning Anna de Vries!", f"Good morning {N}!"),
        # agents' sign-offs
        ("Your refund is on its way.\nWarm regards, Tom from Brightnest",
         f"Your refund is on its way.\nWarm regards, {N} from Brightnest"),
        ("Your refund is on its way.\nTom from Brightnest", f"Your refund is on its way.\n{N} from Brightnest"),
        ("Happy to help!\n\nKind regards,\nSophie van Dam", f"Happy to help!\n\nKind regards,\n{N}"),
        # postal addresses and postcodes
        ("Please deliver to Keizersgracht 123, 1015 CJ Amsterdam", f"Please deliver to {A}"),
        ("I live at 12 Baker Street, London NW1 6XE.", f"I live at {A}."),
        ("new address: Van Baerlestraat 12-2, thanks", f"new address: {A}, thanks"),
        ("send it to Hauptstraße 5 please", f"send it to {A} please"),
        ("my postcode is 3511 AV", f"my postcode is {A}"),
        ("My postcode is SW1A 1AA", f"My postcode is {A}"),
        # dates of birth
        ("my date of birth is 12/03/1985", f"my date of birth is {B}"),
        ("DOB: 1985-03-12", f"DOB: {B}"),
        ("I was born on 3 May 1985, can you check?", f"I was born on {B}, can you check?"),
    ],
)
def test_scrubs_what_operators_tickets_hold(text, expected):
    out, kinds = scrub_pii(text)
    assert out == expected
    assert kinds


@pytest.mark.parametrize(
    "text",
    [
        "Dear customer, thanks for your patience.",
        "Dear Customer,",
        "Dear Sir or Madam,",
        "Hi there, how can I help?",
        "Hi Team,",
        "Hello Monday,",
        "Please see our Help Centre.",
        "The Brass reading lamp is back in stock.",
        "Join Larkspur Circle for free delivery.",
        "We deliver on Monday, or in March.",
        "Best,\nThe Larkspur Team",
        "Kind regards,\nLarkspur & Co. Customer Care",
        "Your order shipped on 12/03/2024 and arrives 14 March 2024.",
        "The file is 1500 MB and the box weighs 20 KG",
        "We ship 2026 EU orders from Utrecht; 1500 US customers too.",
        "I'm here to help you cancel your order.",
        "Don't worry, I'm here to guide you through the process.",
        "You have {{Return Window}} to return it",
        "I ordered 3 items for 45 dollars on 2024-01-05",
    ],
)
def test_policy_words_product_names_and_dates_are_kept(text):
    assert scrub_pii(text) == (text, [])


def test_names_a_customer_gives_are_found_for_the_reply_too():
    assert names_in("Hello, this is Anna de Vries") == ["Anna de Vries", "Anna"]
    assert names_in("Hi, Pieter van den Berg here") == ["Pieter van den Berg", "Pieter"]
    assert names_in("Dear Sarah, thanks") == ["Sarah"]
    assert names_in("I'm Mr. Smith") == ["Smith"]
    assert names_in("Dear customer, thanks") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # QA: a sign-off "- Sarah" (a dash and a first name on the last line) was kept on import
        ("My lamp arrived broken, can you send a new one?\n- Sarah",
         f"My lamp arrived broken, can you send a new one?\n- {N}"),
        ("My lamp arrived broken. - Sarah", f"My lamp arrived broken. - {N}"),
        ("Where is my parcel?\n\n— Sarah de Vries\n", f"Where is my parcel?\n\n— {N}\n"),
        ("Where is my parcel?\n-Pieter van den Berg.", f"Where is my parcel?\n-{N}."),
    ],
)
def test_a_dash_sign_off_on_the_last_line_is_a_name(text, expected):
    assert scrub_pii(text) == (expected, [N])


@pytest.mark.parametrize(
    "text",
    [
        "Delivery options:\n- Standard\n- Express",  # the last item of a list is not a sign-off
        "You can pay with:\n- Klarna",
        "Steps:\n1. Open Orders\n- Done",
        "We are happy to help!\n- The Larkspur Team",
        "We are happy to help!\n- Larkspur Support",
        "The price is 45 - Express",
    ],
)
def test_a_list_or_a_team_after_a_dash_is_not_a_name(text):
    assert scrub_pii(text) == (text, [])


def test_a_dash_sign_off_name_is_scrubbed_from_the_reply_too():
    from models.pii import scrub_exchange

    message, reply, _ = scrub_exchange("Can I still cancel?\n- Sarah", "Hi Sarah, yes you can.")
    assert (message, reply) == (f"Can I still cancel?\n- {N}", f"Hi {N}, yes you can.")
    assert names_in("Can I still cancel?\n- Sarah") == ["Sarah"]
