"""A factual question gets the knowledge base's current value, even when the model leaves it out.

Real MiniLM embeddings over three of the sample company's policies; the model is a scripted fake
that answers around the fact ("you can start a return from your order page"), the case the
freshness benchmark showed the small model falls into.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sample_kb import kb_service as _kb

from bot.conversation.responder import Responder, states_value
from models.generation import ScriptedGenerator

SAMPLE = Path(__file__).resolve().parents[2] / "knowledge" / "sample"
DOCS = ("returns-policy.md", "delivery-options.md", "contact-customer-service.md", "refund-status.md")
VAGUE = "Happy to help with that! You can start from your order page and we will take it from there."


@pytest.fixture(scope="module")
def knowledge(tmp_path_factory):
    yield from _kb(tmp_path_factory, "facts", [SAMPLE / name for name in DOCS])


def _ask(knowledge, question: str, reply: str = VAGUE, intent: str = "check_refund_policy", **kw):
    generator = ScriptedGenerator().enqueue(reply)
    responder = Responder(knowledge, generator, company_name="Larkspur & Co.", max_new_tokens=64, **kw)
    return responder.answer(text=question, intent=intent, tone="neutral", history=[])


def _asked(kb, question: str, history=()) -> list[str]:
    """The names of the facts the responder takes ``question`` to ask for, from its own retrieval."""
    from datetime import UTC, datetime

    responder = Responder(kb, None, company_name="Larkspur & Co.")
    passages, _ = responder.retrieve(question, list(history))
    return [f.name for f in responder.asked_facts(question, passages, datetime.now(UTC))]



@pytest.mark.slow
def test_the_current_value_is_stated_and_follows_a_policy_edit(knowledge):
    first = _ask(knowledge, "How many days do I have to return an item?")
    assert states_value(first.text, "30") and first.text.startswith(VAGUE[:20])
    assert any(c["document_id"] == "returns-policy" for c in first.citations)
    assert first.guardrail.get("added_fact_statement")

    edited = (SAMPLE / "returns-policy.md").read_text(encoding="utf-8")
    # (the table row too: a revision saying 45 in one place and 30 in another is kept as a draft)
    edited = edited.replace('value: "30"', 'value: "45"', 1).replace("**30** days", "**45** days").replace(
        "within 30 days |", "within 45 days |")
    knowledge.import_bytes(edited.encode(), "returns-policy.md", author="editor", publish=True)

    second = _ask(knowledge, "What is your return window?")
    assert states_value(second.text, "45"), second.text
    assert not states_value(second.text, "30"), second.text  # never the old value
    assert {c["revision"] for c in second.citations if c["document_id"] == "returns-policy"} == {2}


@pytest.mark.slow
def test_a_reply_stopped_by_the_length_cap_ends_on_its_last_whole_sentence(knowledge):
    long_reply = "I can help with your return. " + "You can send it back within {{Return Window}} of delivery " * 20
    generator = ScriptedGenerator().enqueue(long_reply)
    responder = Responder(knowledge, generator, company_name="Larkspur & Co.", max_new_tokens=30)
    result = responder.answer(text="How many days do I have to return an item?", intent="check_refund_policy",
                              tone="neutral", history=[])
    assert result.extra["finish_reason"] == "length"
    assert result.text.startswith("I can help with your return.")
    assert "send it back within" not in result.text  # the broken-off sentence never reaches the customer
    # the asked fact is still stated, in its current value (an earlier test may have edited it)
    assert states_value(result.text, knowledge.facts()["return_window_days"].value), result.text


@pytest.mark.slow
def test_nothing_is_added_when_the_reply_states_it_or_the_question_asks_for_no_fact(knowledge):
    stated = _ask(knowledge, "How much does standard delivery cost?", "Standard delivery costs {{Standard Delivery Price}}.")
    assert "added_fact_statement" not in stated.guardrail and stated.text.count("4.95") == 1
    chat = _ask(knowledge, "Thanks, you have been very helpful!", "You're welcome! Have a lovely day.")
    assert chat.text == "You're welcome! Have a lovely day."
    # a fact the passages do not define is still found by meaning, and its document is cited
    phone = _ask(knowledge, "Which number can I call to reach support?", "Our team is happy to take your call.")
    assert states_value(phone.text, knowledge.facts()["support_phone"].value)


@pytest.mark.slow
def test_a_threshold_question_without_a_price_word_gets_the_threshold(knowledge):
    """"From what order value...?" names no price or cost, and is still a question for a figure."""
    reply = _ask(knowledge, "From what order value is shipping free?", VAGUE)
    threshold = knowledge.facts()["free_shipping_threshold"].value
    assert states_value(reply.text, threshold), reply.text
    # a made-up amount the model writes without its currency sign is not passed on
    invented = _ask(knowledge, "From what order value is shipping free?",
                    "Shipping is free for orders with a value of 100 or more.")
    assert "100" not in invented.text and states_value(invented.text, threshold), invented.text


@pytest.mark.parametrize(("text", "value", "stated"), [
    ("within 14 days", "14", True),
    ("3–5 business days", "3-5", True),
    ("3 to 5 business days", "3-5", True),
    ("60 euros or more", "€60", True),
    ("a 10 % fee", "10%", True),
    ("call +31 20 555 0142", "+31 20 555 0142", True),
    ("call +31 20 555 0142", "14", False),  # a number inside a phone number is not that number
    ("call +31 20 555 0199", "1", False),
    ("open 08:00-20:00 CET", "20", False),
    ("in 2-4 days", "2", False),  # one end of a range is not the value
    ("within 24 hours", "2-4", False),
    ("from €600", "€60", False),
    ("1. Visit our site.\n2. Open Orders.\n3. If you need help, call us.", "3", False),  # list numbers
])
def test_a_value_counts_as_stated_only_as_a_figure_of_its_own(text, value, stated):
    assert states_value(text, value) is stated


@pytest.mark.slow
def test_a_value_hidden_inside_the_phone_number_does_not_count_as_the_answer(knowledge):
    """Refunds take 5 business days; "+31 20 555 0142" holds a 5 but does not say so."""
    phone = knowledge.facts()["support_phone"].value
    days = knowledge.facts()["refund_processing_days"].value
    assert days in phone.replace(" ", "")
    reply = _ask(knowledge, "After you receive my return, how many days until the refund is processed?",
                 "I understand you are waiting for your refund. You can call us at {{Customer Support Phone Number}}.")
    assert phone in reply.text, reply.text  # the model's sentence stays: the number is the real one
    assert reply.guardrail.get("added_fact_statement"), reply.text
    assert states_value(reply.text.replace(phone, ""), days), reply.text


def test_the_added_statement_is_a_whole_sentence_that_says_what_the_figure_is():
    from bot.conversation.responder import fact_statement
    from knowledge.records import Fact

    def fact(name, value, description, doc):
        return Fact(name=name, value=value, unit=None, description=description, placeholders=(),
                    document_id=doc, revision=1, anchor=None)

    match = [{"document_id": "price-match", "text": "## Another shop is cheaper\n\nWe match the price when all "
              "of these are true:\n\n- it is the identical item;\n- you find it within 14 days after you ordered."}]
    statement = fact_statement("Within how many days do you match a lower price?", match,
                               fact("price_match_days", "14", "Days after ordering during which we match a price",
                                    "price-match"))
    assert statement == "Days after ordering during which we match a price: 14."  # not "you find it within..."

    eu = [{"document_id": "international", "text": "## EU\n\n- **Price:** €12.95 per order, free from **€150**."}]
    statement = fact_statement("What does delivery within the EU cost?", eu,
                               fact("eu_delivery_price", "€12.95", "Price of parcel delivery to other EU countries",
                                    "international"))
    assert statement == "Price of parcel delivery to other EU countries: €12.95 per order, free from €150."
    # the same line labels the price, not the threshold: the threshold is stated on its own
    statement = fact_statement("From what order value is EU shipping free?", eu,
                               fact("eu_free_shipping_threshold", "€150",
                                    "Order value from which delivery to other EU countries is free", "international"))
    assert statement == "Order value from which delivery to other EU countries is free: €150."

    cards = [{"document_id": "gift-cards", "text": "Items paid with a gift card are refunded as a new gift card, "
              "valid for the same 3 years from the date of the refund. Gift cards are valid for 3 years."}]
    statement = fact_statement("How long is a gift card valid?", cards,
                               fact("gift_card_validity_years", "3", "Years a gift card stays valid", "gift-cards"))
    assert statement == "Gift cards are valid for 3 years."  # as many of the question's words, and to the point


def test_one_of_a_unit_is_singular():
    from bot.conversation.responder import fact_value_text
    from knowledge.records import Fact

    express = Fact(name="express_delivery_days", value="1", unit="business days", description=None,
                   placeholders=(), document_id="delivery", revision=1, anchor=None)
    assert fact_value_text(express) == "1 business day"
    assert fact_value_text(Fact(**{**express.__dict__, "value": "1-2"})) == "1-2 business days"


def test_only_an_amount_above_zero_is_a_charge_that_free_would_contradict():
    from bot.conversation.responder import _is_charge

    assert _is_charge("€9.00") and _is_charge("12%") and _is_charge("€4.95")
    assert not _is_charge("€0") and not _is_charge("30") and not _is_charge("+31 20 555 0142")


@pytest.mark.slow
def test_the_answer_comes_second_and_made_up_steps_do_not_come_at_all(knowledge):
    value = knowledge.facts()["return_window_days"].value
    reply = ("I understand you'd like to know about our return window. Here's what you can do:\n"
             "1. Visit our {{Website Name}}.\n2. Enter your order date and the item number.\n"
             "3. Follow the instructions on the screen.\n\nIf you have more questions, just ask.")
    result = _ask(knowledge, "How many days do I have to return an item?", reply)
    opener, second, *rest = result.text.split("\n")
    assert opener == "I understand you'd like to know about our return window."
    assert states_value(second, value) and second == result.guardrail["added_fact_statement"]
    assert "item number" not in result.text and "1." not in result.text and "what you can do" not in result.text
    assert result.text.rstrip().endswith("If you have more questions, just ask.")
    assert "\n\n\n" not in result.text  # the dropped steps leave one blank line at most
    crlf = _ask(knowledge, "How many days do I have to return an item?", reply.replace("\n", "\r\n"))
    assert "\n\n\n" not in crlf.text.replace("\r\n", "\n"), crlf.text
    assert result.text.count(second) == 1  # stated once, not again at the end
    # what followed the opening sentence on its line starts a line of its own after the answer
    same_line = _ask(knowledge, "What is your return window?", "Happy to help. Returns are easy with us.")
    assert same_line.text.split("\n")[2] == "Returns are easy with us.", same_line.text

    # a reply that opens with the value itself gets nothing added
    direct = _ask(knowledge, "What is your return window?", "You can return items within {{Return Window}}. Enjoy!")
    assert "added_fact_statement" not in direct.guardrail
    assert direct.text == f"You can return items within {value} days. Enjoy!", direct.text

    # a question about how to do something the KB documents no procedure for (only steps about
    # something else) does not get the model's steps either: with nothing else said, the policy is quoted
    how = _ask(knowledge, "How do I wrap my gift as a present?",
               "Here is how:\n1. Open {{Return Policy}}.\n2. Read it through.")
    assert "Open" not in how.text and "Read it through" not in how.text, how.text
    assert "added_procedure" not in how.guardrail and how.verdict == "fallback"


@pytest.fixture(scope="module")
def sample_kb(tmp_path_factory):
    """The whole sample company KB."""
    yield from _kb(tmp_path_factory, "sample-kb", [p for p in sorted(SAMPLE.glob("*.md")) if p.name != "SLOTS.md"])


@pytest.mark.slow
@pytest.mark.parametrize(("question", "fact"), [
    ("How long do I have to return a lamp?", "return_window_days"),  # the README's example
    ("How many working days for standard shipping?", "standard_delivery_days"),
    ("What is the price of next-day delivery?", "next_day_delivery_price"),
    ("Which number can I call to reach support?", "support_phone"),
])
def test_a_named_item_does_not_hide_the_fact_a_question_asks_for(sample_kb, question, fact):
    from knowledge.fact_match import _narrowed

    ranked = sample_kb.match_facts(question, k=2)
    assert ranked[0][0].name == fact, ranked
    assert ranked[0][1] >= 0.5  # above the responder's threshold for an asked fact
    if "lamp" in question:
        assert _narrowed(question, frozenset({"return", "window", "days"})) == "How long do I have to return a?"


@pytest.mark.slow
def test_a_how_to_question_gets_the_documented_procedure_not_made_up_steps(sample_kb):
    reply = ("Sure, happy to help with your return! Here's what you can do:\n1. Visit our {{Website Name}}.\n"
             "2. Fill in the return form and wait for our call.\n\nAnything else, just ask.")
    result = _ask(sample_kb, "How do I start a return?", reply, intent="return_item")
    lines = result.text.split("\n")
    assert lines[0] == "Sure, happy to help with your return!"
    assert lines[1] == "Here is how (Register your return):", result.text
    assert lines[2].startswith("1. Sign in and open My Account › Returns & refunds")
    assert "2. Press Start a return." in lines  # the KB's own step, bold marks removed
    assert "return form" not in result.text and "Visit our" not in result.text  # the model's steps are gone
    assert result.text.endswith("Anything else, just ask.") and "\n\n\n" not in result.text
    assert result.guardrail["added_procedure"].startswith("Here is how (Register your return):")
    assert result.citations[0]["document_id"] == "returning-an-item"

    # a how-to question that also names a fact ("price") still gets the procedure first
    match = _ask(sample_kb, "How do I ask for a price match?", "Happy to help!\n1. Send us a screenshot of the lower price.", intent="price_match")
    assert match.text.split("\n")[1] == "Here is how (How to ask):", match.text
    assert "screenshot of the lower price" not in match.text
    assert match.guardrail["added_procedure"].startswith("Here is how (How to ask):")

    # an opening sentence that is a sign-off comes after the answer, not before it
    sign_off = "If you have any further questions, please don't hesitate to reach out to our support team."
    cancel = _ask(sample_kb, "How do I cancel my order?", sign_off + "\n1. Go to the cancellation page.", intent="cancel_order")
    assert cancel.text.startswith("Here is how (Cancel it yourself):\n1. "), cancel.text
    assert cancel.text.rstrip().endswith(sign_off) and "cancellation page" not in cancel.text


@pytest.mark.slow
def test_a_generator_failing_after_the_answer_was_shown_does_not_repeat_it(knowledge):
    value = knowledge.facts()["return_window_days"].value
    generator = ScriptedGenerator().enqueue("Happy to help with that. Let me check the details for you now.",
                                            fail_after=8)
    responder = Responder(knowledge, generator, company_name="Larkspur & Co.", max_new_tokens=64)
    result = responder.answer(text="What is your return window?", intent="return_policy", tone="neutral",
                              history=[])
    assert result.error and result.verdict == "fallback"
    statement = result.guardrail["added_fact_statement"]
    assert states_value(statement, value) and result.text.count(statement) == 1, result.text


@pytest.mark.slow
def test_every_citation_has_its_documents_title(sample_kb):
    # the return window's policy is not among this question's passages: its citation is added
    # for the fact alone and still carries the document's title
    result = _ask(sample_kb, "How long do I have to return a lamp?")
    assert states_value(result.text, "30"), result.text
    assert result.citations and all(c["title"] for c in result.citations), result.citations
    titles = {c["document_id"]: c["title"] for c in result.citations}
    assert result.citations[0]["document_id"] == "returns-policy"  # the answer's source comes first
    assert titles.get("returns-policy") == sample_kb.get("returns-policy").title


def test_the_terminal_labels_a_citation_by_what_it_knows():
    from bot.terminal import citation_label

    assert citation_label({"title": "Returns", "heading": "Window"}) == "Returns › Window"
    assert citation_label({"title": "Returns", "heading": "Returns"}) == "Returns"
    assert citation_label({"document_id": "returns-policy", "title": None, "heading": None}) == "returns-policy"


@pytest.mark.slow
@pytest.mark.parametrize(("question", "heading", "first_step"), [
    ("How do I create an account?", "Sign up", "1. Go to larkspur.example and press the person icon"),
    ("How can I subscribe to the newsletter?", "Subscribe", "1. Open My Account › Email preferences."),
    # answer QA: "Our help pages don't give step-by-step instructions for that" (no page says "put" or "wrong")
    ("i put the wrong address on my order, how can i change it", "While the order is Placed: change it yourself",
     "1. Sign in and open My Account › Orders."),
])
def test_the_procedure_is_found_in_a_retrieved_document_whose_steps_were_not_retrieved(
        sample_kb, question, heading, first_step):
    result = _ask(sample_kb, question, "Happy to help!\n1. Visit our website and click the banner.", intent="create_account")
    lines = result.text.split("\n")
    assert lines[1] == f"Here is how ({heading}):", result.text
    assert lines[2].startswith(first_step) and "banner" not in result.text
    assert result.citations[0]["anchor"] == heading.lower().replace(" ", "-").replace(":", "")


@pytest.mark.slow
def test_a_product_the_shop_sells_is_an_item_to_the_kbs_procedure(sample_kb):
    # "I want to return a rug, how do I do that?" was told the help pages have no steps for it
    def ask(products):
        return _ask(sample_kb, "I want to return a rug, how do I do that?", "Happy to help!\n1. Visit our website.",
                    intent="get_refund", products=products)

    assert "Here is how (Register your return):" in ask({"rug", "lamp"}).text
    assert "Here is how" not in ask(set()).text  # the words "return" and "rug" alone: no procedure


@pytest.mark.slow
def test_the_answer_goes_before_a_list_the_guardrail_held_for_its_first_item(sample_kb):
    # the line ending in ":" reaches the responder together with the list's first item
    reply = "Good to know:\n- A return label costs {{Return Shipping Fee}}.\nAnything else, just ask."
    result = _ask(sample_kb, "How many days do I have to return an item?", reply)
    first, second = result.text.split("\n")[:2]
    assert "30 days" in first and second == "Good to know:", result.text


@pytest.mark.slow
def test_a_reply_left_with_courtesies_only_gets_the_policy_quoted(sample_kb):
    # seen with the real model: an opening line, four made-up steps (dropped) and a sign-off
    reply = ("I understand that you are looking for information on our return policy. Here's what you can do:\n\n"
             "1. Visit our {{Website Name}}.\n2. Look for the {{Return Policy}} section.\n\n"
             "If you have any further questions, please don't hesitate to contact our support team.")
    result = _ask(sample_kb, "What is your return policy?", reply, intent="check_refund_policy")
    assert "Here is what our Returns policy says:" in result.text, result.text
    assert "within 30 days of delivery" in result.text and result.guardrail["added_quote"]
    # a reply that says something of the policy gets no quote
    said = _ask(sample_kb, "What is your return policy?", "Most items can be returned; start it in your account.",
                intent="check_refund_policy")
    assert "added_quote" not in said.guardrail, said.text


@pytest.mark.slow
def test_what_a_heading_rules_out_is_answered_no(sample_kb):
    # seen with the real model: "Absolutely! If you have any further questions, ..."
    result = _ask(sample_kb, "Does the warranty cover scratches on my wooden table?",
                  "Absolutely! If you have any further questions, just ask.", intent="complaint")
    assert result.text.startswith("I'm afraid not. Our help pages say (What is not covered): Normal wear"), result.text
    assert "Absolutely" not in result.text and result.citations[0]["document_id"] == "warranty"


@pytest.mark.slow
def test_an_unnamed_figure_that_is_not_the_asked_facts_value_is_dropped(sample_kb):
    # seen with the real model, asked about express delivery (1-2 business days): standard delivery's time
    reply = ("We offer express delivery, and it's available within the following time frames:\n"
             "3-5 business days after the order is Shipped.\nStandard delivery takes 3-5 business days.\n"
             "If you have any questions, just ask.")
    result = _ask(sample_kb, "How fast is express delivery?", reply, intent="delivery_period")
    assert "1-2 business days" in result.text, result.text
    assert "3-5 business days after the order is Shipped" not in result.text
    assert "Standard delivery takes 3-5 business days." in result.text  # names the fact it gives
    assert "3-5 business days" in result.guardrail["unbacked_claims"]


@pytest.mark.slow
def test_what_a_retrieved_document_rules_out_outside_the_retrieved_section_is_read(sample_kb):
    # retrieval returns the newsletter's "Unsubscribe" section (third); the sentence is in another section
    result = _ask(sample_kb, "Can I stop getting delivery e-mails?", "Certainly! Just press Unsubscribe.",
                  intent="newsletter_subscription")
    assert result.text.startswith("I'm afraid not."), result.text
    assert "you cannot switch them off" in result.text and "Unsubscribe" not in result.text


@pytest.mark.slow
def test_a_name_in_a_retrieved_sections_heading_is_the_policys_word(sample_kb):
    # "Options in the Netherlands and Belgium" is a heading; the section's own text is a table of options
    result = _ask(sample_kb, "Can I get next-day delivery?",
                  "Absolutely! We offer next-day delivery to customers in the Netherlands and Belgium.",
                  intent="delivery_options")
    assert "Options in the Netherlands and Belgium" in [c.get("heading") for c in result.citations]
    assert "in the Netherlands and Belgium" in result.text, result.guardrail


@pytest.mark.slow
def test_beside_the_kbs_procedure_the_models_own_account_of_it_goes(sample_kb):
    # seen with the real model: the KB's steps for buying a gift card, then the model's own version
    reply = ("I understand that you're looking for assistance in buying a gift card. We offer gift cards to "
             "various products. Simply enter your gift card number or the order number, and we will assist you "
             "in placing the gift card. If you have any questions, our support team is available to help.")
    result = _ask(sample_kb, "How can I buy a gift card?", reply, intent="place_order")
    assert "Here is how (Buying a gift card):" in result.text, result.text
    assert result.text.startswith("I understand that you're looking for assistance in buying a gift card.")
    assert "our support team is available to help" in result.text
    assert "various products" not in result.text and "Simply enter" not in result.text
    # the baseline without procedures keeps the model's prose
    kept = _ask(sample_kb, "How can I buy a gift card?", reply, intent="place_order", procedures=False)
    assert "Simply enter your gift card number" in kept.text, kept.text


@pytest.mark.slow
@pytest.mark.parametrize("question", ["How do I wrap a gift?", "How do I use a gift card?", "How do I know my size?"])
def test_a_procedure_sharing_one_word_with_the_question_is_not_shown(sample_kb, question):
    # "Buying a gift card" shares "gift" with the first two; "How to change your order" mentions sizes
    result = _ask(sample_kb, question, "Happy to help with that! Our team can tell you more.", intent="other")
    assert "added_procedure" not in result.guardrail and "Here is how" not in result.text, result.text


def test_procedure_words_are_matched_on_their_stems():
    from bot.conversation.responder import _stems

    assert _stems("Buying a gift card") >= _stems("buy gift cards")
    assert _stems("Saving a card") >= _stems("save a card")
    assert _stems("Change your e-mail address") == _stems("changing your email addresses")
    assert _stems("Using a gift card") == _stems("use gift cards")
    assert _stems("contact us") == {"contact"}  # "us" is no content word


@pytest.mark.slow
def test_a_how_to_question_without_a_documented_procedure_gets_no_made_up_steps(sample_kb):
    from bot.conversation.responder import NO_PROCEDURE_NOTE

    reply = ("Happy to help you wrap a gift! You can follow these steps:\n1. Sign in to your account on our website.\n"
             "2. Select the gift you want to wrap.\n\nIf you have any questions, our team is happy to help.")
    result = _ask(sample_kb, "How do I wrap a gift?", reply, intent="other")
    assert "Sign in" not in result.text and "Select the gift" not in result.text, result.text
    assert "follow these steps" not in result.text
    assert result.text.startswith("Happy to help you wrap a gift!")
    assert result.text.endswith(NO_PROCEDURE_NOTE) and result.guardrail["no_documented_procedure"]


@pytest.mark.slow
def test_a_how_to_question_the_kb_answers_in_prose_gets_those_words(sample_kb):
    from bot.conversation.responder import NO_PROCEDURE_NOTE

    reply = "Happy to help!\n1. Sign in to your account.\n2. Select the gift card you wish to use."
    result = _ask(sample_kb, "How do I use a gift card?", reply, intent="other")
    lines = result.text.split("\n")
    assert lines[0] == "Happy to help!"
    assert lines[1].startswith('Our help pages say (Using a gift card): On the payment step of checkout, press '
                               '"Add voucher or gift card"'), result.text
    assert "Sign in" not in result.text and NO_PROCEDURE_NOTE not in result.text
    assert result.guardrail["added_prose_answer"] == lines[1]
    assert result.citations[0]["anchor"] == "using-a-gift-card"
    # a section that only mentions the words is no answer: "How do I pay with Klarna?" is not
    # answered by "Paying by invoice" (businesses), and gets no made-up steps either
    klarna = _ask(sample_kb, "How do I pay with Klarna?", reply, intent="other")
    assert "added_prose_answer" not in klarna.guardrail and "Sign in" not in klarna.text, klarna.text


@pytest.mark.slow
def test_a_problem_statement_gets_the_documented_procedure_and_never_the_models_steps(sample_kb):
    reply = ("I understand that your payment was declined. Here's what you can do:\n1. Go to the Payment Center page.\n"
             "2. Call your bank and ask for a refund code.\n\nAnything else, just ask.")
    result = _ask(sample_kb, "My payment was declined.", reply, intent="payment_issue")
    assert "Here is how (Payment declined at checkout):" in result.text, result.text
    assert "refund code" not in result.text and "Payment Center" not in result.text
    assert result.guardrail["added_procedure"].startswith("Here is how (Payment declined at checkout):")
    # a yes/no question the KB has no procedure for keeps the model's prose and loses its steps
    two = _ask(sample_kb, "Can I split my payment over two cards?",
               "Of course! Here's how it works:\n1. Select the two cards you want to split.\n2. Confirm the split.",
               intent="check_payment_methods")
    assert "Select the two cards" not in two.text and "Confirm the split" not in two.text, two.text
    assert two.text.startswith("I'm afraid not."), two.text  # "Other combinations, such as two cards, ..."
    # the old behaviour, kept as the benchmarks' baseline, showed them
    baseline = Responder(sample_kb, ScriptedGenerator().enqueue("Of course!\n1. Select the two cards you want to split."),
                         company_name="Larkspur & Co.", max_new_tokens=64, procedures=False, limits=False)
    kept = baseline.answer(text="Can I split my payment over two cards?", intent="check_payment_methods",
                           tone="neutral", history=[])
    assert "Select the two cards" in kept.text


@pytest.mark.slow
def test_options_that_finish_a_sentence_are_not_a_procedure(sample_kb):
    # "Once the order has Shipped ... You can: 1. open the carrier's tracking page ...; or 2. refuse the parcel"
    from bot.conversation.responder import procedure

    shipped = next(p for p in Responder(sample_kb, None, company_name="x")._other_sections(
        Responder(sample_kb, None, company_name="x").retrieve("How do I change the delivery address?", [])[0])
        if p.get("anchor") == "once-the-order-has-shipped")
    assert procedure("How do I change the delivery address once the order has shipped?", [shipped]) is None


@pytest.mark.slow
@pytest.mark.parametrize(("question", "where"), [
    ("How do I unsubscribe from the newsletter?", "Our help pages say (Unsubscribe):"),  # "from" is no content word
    ("How do I leave a review?", "Here is how (Review a product):"),  # "leave" a review is writing one
])
def test_how_to_questions_worded_as_customers_word_them(sample_kb, question, where):
    result = _ask(sample_kb, question, "Happy to help!\n1. Visit our website.", intent="other")
    assert where in result.text, result.text


def test_a_supporting_sentence_reads_well_on_its_own():
    """QA saw "Price:** €45 per order, ..." and a raw table row added to replies."""
    from bot.conversation.responder import supporting_sentence

    passages = [{"document_id": "large-item-delivery", "heading": "Large items",
                 "text": "- **Price:** €45 per order, however many large items it contains.\n"
                         "| Faulty item | €45 refunded; return label free |"}]
    facts = [{"document_id": "large-item-delivery", "value": "€45"}]
    said = supporting_sentence("How much does large item delivery cost?", passages, facts, "Happy to help!")
    assert said == "Large items, price: €45 per order, however many large items it contains.", said
    table_only = [{**passages[0], "text": "| Faulty item | €45 refunded; return label free |"}]
    assert supporting_sentence("How much is it?", table_only, facts, "Happy to help!") is None


@pytest.mark.slow
def test_a_factual_question_for_a_retrieved_documents_fact_is_in_the_kb(knowledge):
    """QA: "What is your return window?" was asked to rephrase: the intent model (trained on tickets)
    called it out of scope, and no passage uses the word "window"."""
    from bot.conversation.responder import asks_kb_fact, passage_dict

    def asks(question: str) -> bool:
        passages = [passage_dict(p) for p in knowledge.retrieve(question, k=3)]
        return asks_kb_fact(question, passages, knowledge)

    assert asks("What is your return window?")
    assert asks("What are your phone hours?") or asks("What is your customer service phone number?")
    assert not asks("What is the exchange rate for US dollars today?")  # no fact of the KB's
    assert not asks("Tell me a joke about returns")  # not a factual question
    assert not asks_kb_fact("What is your return window?", [], knowledge)  # nothing retrieved


@pytest.fixture(scope="module")
def moved_phone(tmp_path_factory):
    """The support phone changed in its own policy only: "Talking to a person" still gives the old one."""
    for service in _kb(tmp_path_factory, "moved",
                       [SAMPLE / "contact-customer-service.md", SAMPLE / "talk-to-a-person.md"]):
        edited = (SAMPLE / "contact-customer-service.md").read_text(encoding="utf-8")
        service.import_bytes(edited.replace("+31 20 555 0142", "+31 20 555 0199").encode(),
                             "contact-customer-service.md", author="editor", publish=True)
        yield service


@pytest.mark.slow
def test_another_policys_old_phone_number_never_reaches_the_customer(moved_phone):
    assert moved_phone.superseded_values() == {"+31 20 555 0142": "+31 20 555 0199"}
    result = _ask(moved_phone, "Can I phone someone?", "Of course! You can call us on +31 20 555 0142.",
                  intent="contact_human_agent")
    assert "0142" not in result.text, result.text
    # the reply gives the number in force, whichever policy it quotes
    assert "+31 20 555 0199" in result.text, result.text


@pytest.mark.slow
def test_of_two_close_facts_the_one_the_question_names_is_stated_alone(knowledge):
    # seen: "How much is standard delivery?" after questions about furniture got the large-item price first
    from datetime import UTC, datetime

    from bot.conversation.responder import Responder

    responder = Responder(knowledge, None, company_name="Larkspur & Co.")
    question = "How much is standard delivery?"
    passages, _ = responder.retrieve(question, [("customer", "Is shipping free for sofas?")])
    names = [f.name for f in responder.asked_facts(question, passages, datetime.now(UTC))]
    assert names == ["standard_delivery_price"], names


@pytest.mark.slow
@pytest.mark.parametrize("question", ["How long is the warranty?", "How long is your guarantee?",
                                      "Is there a warranty on lamps?"])
def test_the_fact_a_question_names_wins_over_one_read_closer_by_its_how_long(sample_kb, question):
    # seen: "How long is the warranty?" got "Time within which we review a warranty claim ...: one business
    # day" (``claim_review_time`` reads closest to "how long"), "How long is your guarantee?" "We reply
    # within one business day", "Is there a warranty on lamps?" the furniture frames' 5 years
    names = _asked(sample_kb, question)
    assert names == ["warranty_months"], names


@pytest.mark.slow
@pytest.mark.slow
@pytest.mark.parametrize(("question", "fact"), [("Can I return it after 40 days?", "return_window_days"),
                                                ("Is the warranty still valid after 3 years?", "warranty_months")])
def test_a_yes_no_question_naming_a_length_of_time_asks_for_the_fact_that_bounds_it(sample_kb, question, fact):
    # "<b>Can I return it after 40 days?</b>" read as rendered was a yes/no question no sentence names, and got
    # "I can't find a clear answer"; the return window answers it
    assert _asked(sample_kb, question, [("customer", "How long do I have to return a lamp?")])[:1] == [fact]


@pytest.mark.slow
def test_a_cut_off_written_in_two_words_asks_for_the_time(sample_kb):
    # QA: "whats teh cut off time for next day delivery" got next-day delivery's price
    assert _asked(sample_kb, "whats teh cut off time for next day delivery")[0] == "next_day_cutoff"


@pytest.mark.slow
def test_a_fact_the_question_names_is_not_taken_when_it_asks_another_kind_of_figure(sample_kb):
    # "How late can I order for next-day delivery?" names next-day delivery, whose price is a fact too; it
    # asks for a time of day (seen: "Price of next-day delivery: €16.95.")
    from datetime import UTC, datetime

    from bot.conversation.responder import Responder

    responder = Responder(sample_kb, None, company_name="Larkspur & Co.")
    question = "How late can I order for next-day delivery?"
    passages, _ = responder.retrieve(question, [])
    names = [f.name for f in responder.asked_facts(question, passages, datetime.now(UTC))]
    assert names[0] == "next_day_cutoff" and "next_day_delivery_price" not in names, names
    passages, _ = responder.retrieve("How much is next-day delivery?", [])
    assert [f.name for f in responder.asked_facts("How much is next-day delivery?", passages,
                                                  datetime.now(UTC))] == ["next_day_delivery_price"]


@pytest.mark.slow
@pytest.mark.parametrize(("question", "fact"), [
    ("How much is shipping?", "standard_delivery_price"),
    ("What are your shipping costs?", "standard_delivery_price"),
    ("How much does delivery cost?", "standard_delivery_price"),
    ("How long does delivery take?", "standard_delivery_days"),
    ("how many days for shipping?", "standard_delivery_days"),
])
def test_a_question_that_names_no_option_gets_the_standard_one(sample_kb, question, fact):
    # seen: "how much is shipping?" got express delivery's and large-item delivery's prices, whose
    # descriptions MiniLM reads closer to it than standard delivery's long one
    assert _asked(sample_kb, question) == [fact]


@pytest.mark.slow
@pytest.mark.parametrize(("question", "fact"), [
    ("How much is express delivery?", "express_delivery_price"),
    ("How much is delivery to Germany?", "eu_delivery_price"),
    ("How long does delivery to France take?", "eu_delivery_days"),
    ("How long does large-item delivery take?", "large_item_delivery_days"),
])
def test_a_question_that_names_an_option_or_a_place_is_not_given_the_standard_one(sample_kb, question, fact):
    names = _asked(sample_kb, question)
    assert fact in names and not {"standard_delivery_price", "standard_delivery_days"} & set(names), names


@pytest.mark.slow
@pytest.mark.slow
@pytest.mark.parametrize(("question", "fact"), [
    ("How much is delivery to Germany?", "eu_delivery_price"),
    ("How long does shipping to Spain take?", "eu_delivery_days"),
    ("How much is standard delivery to the Netherlands?", "standard_delivery_price"),
])
def test_an_eu_country_the_kb_does_not_name_gets_the_eu_figure_alone(sample_kb, question, fact):
    # seen: "How much is delivery to Germany?" got express delivery's price first
    assert _asked(sample_kb, question) == [fact]


@pytest.mark.slow
def test_a_follow_up_with_a_pronoun_is_answered_for_the_previous_questions_subject(sample_kb):
    history = [("customer", "Do you deliver to Switzerland?"),
               ("bot", "Yes, we ship parcels to the United Kingdom, Switzerland and Norway.")]
    generator = ScriptedGenerator().enqueue(VAGUE)
    responder = Responder(sample_kb, generator, company_name="Larkspur & Co.", max_new_tokens=64)
    result = responder.answer(text="how long does that take?", intent="delivery_period", tone="neutral",
                              history=history)
    value = sample_kb.facts()["non_eu_delivery_days"].value
    assert states_value(result.text, value), result.text
    assert not states_value(result.text, sample_kb.facts()["standard_delivery_days"].value), result.text
    assert any(c["document_id"] == "international-shipping" for c in result.citations)


@pytest.mark.slow
@pytest.mark.parametrize("question", ["How much do I need to spend for free delivery?",
                                      "From what amount is delivery free?", "Is there free delivery?"])
def test_free_delivery_asks_for_the_free_shipping_threshold(sample_kb, question):
    # seen (the freshness benchmark's one miss since session 13): "How much do I need to spend for free
    # delivery?" got express and standard delivery's prices; MiniLM reads "how much ... delivery" as a price
    names = _asked(sample_kb, question)
    assert names == ["free_shipping_threshold"], names
    # the KB's own sentence, which says "free-shipping threshold", is read the same way
    from bot.conversation.limits import same_words

    assert same_words("There is no free-shipping threshold.") == "There is no free-shipping threshold."
    assert same_words("Do you offer free delivery on sofas?") == "Do you offer free shipping threshold on sofas?"


@pytest.mark.slow
@pytest.mark.parametrize("question", ["what is your returns window?", "whats the returns window",
                                      "What is your return window?"])
def test_the_readmes_example_question_asks_for_the_return_window(sample_kb, question):
    # seen in QA: the README's curl example ("what is your returns window?") was asked to rephrase; MiniLM
    # reads it at 0.47 to return_window_days, under the 0.5 bar, and the intent model called it out of scope
    from datetime import UTC, datetime

    from bot.conversation.responder import Responder, asks_kb_fact

    responder = Responder(sample_kb, None, company_name="Larkspur & Co.")
    passages, _ = responder.retrieve(question, [])
    assert asks_kb_fact(question, passages, sample_kb)
    assert [f.name for f in responder.asked_facts(question, passages, datetime.now(UTC))] == ["return_window_days"]
    # named in full means every word of the name but its kind word ("days"), and the kind of figure asked
    from bot.conversation.responder import names_fact
    from bot.conversation.words import stems

    fact = sample_kb.facts()["return_window_days"]
    for text, named in (("what is your returns window?", True), ("What is the window cleaning time?", False),
                        ("How much does the returns window cost?", False)):
        assert names_fact(stems(text), text, fact) is named, text


def test_a_section_retrieved_twice_is_cited_once(sample_kb):
    from bot.conversation.responder import Responder

    # QA: a reply listed "Placing an order › Step by step" twice (two chunks of one long section)
    question = "order LK-12345678 please"
    passages, _ = Responder(sample_kb, None, company_name="Larkspur & Co.").retrieve(question, [])
    assert len({(p["document_id"], p["anchor"]) for p in passages}) < len(passages)  # the case itself
    result = _ask(sample_kb, question, intent="out_of_scope")
    keys = [(c["document_id"], c["revision"], c["anchor"]) for c in result.citations]
    assert len(keys) == len(set(keys)), result.citations


@pytest.mark.parametrize(("said", "read"), [
    ("my package arrived and the vase is smashed", {"damag", "arriv", "packag", "vas"}),
    ("the mirror came cracked", {"damag", "mirror", "cam"}),
    ("the kettle stopped working", {"faulty", "kettl"}),
    ("it won't turn on", {"faulty"}),
    ("the lamp doesn't work", {"faulty", "lamp"}),
    ("the lamp is not working", {"faulty", "lamp"}),
    ("the glass bowl has a big crack in it", {"glass", "bowl", "has", "big", "damag"}),
    ("my chair wobbles", {"chair", "damag"}),
    ("the leg joint came loose", {"leg", "joint", "damag"}),
    ("you sent me the wrong colour", {"sent", "wrongitem"}),  # as the policy's "wrong item"
    ("i received someone elses order", {"receiv", "wrongitem"}),
    ("Damaged, faulty or wrong items", {"damag", "faulty", "wrongitem"}),
    ("the wrong address", {"wrong", "address"}),  # not an item
    ("the lamp works fine", {"lamp", "work", "fin"}),  # no problem: nothing read into it
])
def test_a_damaged_or_failing_item_is_read_in_the_policys_words(said, read):
    from bot.conversation.words import stems

    assert stems(said) == read


@pytest.mark.slow
@pytest.mark.parametrize("report", [
    "my package arrived and the vase is smashed",  # handed to a person as angry and not understood (QA)
    "my lamp arrived broken",  # the model asked for "more details" and gave no steps (QA)
    "the mirror came cracked, what do i do?",
    "the kettle i bought 8 months ago stopped working",
    "the glass bowl i got today has a big crack in it",  # QA: asked what it was about
    "you sent me the wrong colour cushion cover",
])
def test_a_damaged_or_faulty_item_gets_the_kbs_steps_for_reporting_it(sample_kb, report):
    result = _ask(sample_kb, report, "I'm sorry to hear that. Could you please provide more details?\n"
                  "1. Visit our website and open the Damage Center.", intent="out_of_scope")
    assert "Report a problem" in result.text and "Damage Center" not in result.text, result.text
    assert result.text.split("\n")[1] in ("Here is how (Report it quickly):", "Here is how (How to make a claim):")


@pytest.mark.slow
def test_a_section_retrieved_by_its_paragraph_is_read_whole_for_its_steps(sample_kb):
    # "Report it quickly" is indexed as two chunks, its paragraph and its steps: retrieving the paragraph
    # alone used to hide the steps from every later look at the document's other sections
    responder = Responder(sample_kb, None, company_name="x")
    passages = [p for p in responder.retrieve("Please report transport damage within 48 hours of delivery", [])[0]
                if p.get("anchor") == "report-it-quickly"]
    assert passages and "1. Sign in" not in passages[0]["text"]
    whole = [s for s in responder._other_sections(passages) if s["anchor"] == "report-it-quickly"]
    assert len(whole) == 1 and "Please report transport damage" in whole[0]["text"]
    assert "6. Press **Submit**." in whole[0]["text"]


@pytest.mark.slow
def test_a_damaged_or_faulty_item_is_in_the_kb_though_no_passage_names_it(sample_kb):
    from bot.conversation.limits import covers, in_knowledge_base, reported_problem

    def passages(q):
        return Responder(sample_kb, None, company_name="x").retrieve(q, [])[0]

    vase = "my package arrived and the vase is smashed"
    assert not covers(vase, passages(vase))  # "vase" and "package": no passage uses most of its words
    assert reported_problem(vase, passages(vase)) == {"damag"}
    assert in_knowledge_base(vase, passages(vase))
    kettle = "the kettle i bought 8 months ago stopped working"
    assert reported_problem(kettle, passages(kettle)) == {"faulty"}
    # a problem the retrieved passages do not speak of, and no problem at all
    assert not reported_problem("my bike is broken", passages("How do I pay with Klarna?"))
    assert not reported_problem("the kettle works fine", passages(kettle))


def test_damage_the_customer_caused_is_an_accident_not_a_problem_to_report():
    # QA: "i dropped my mug and it broke, can i get a new one under warranty" got the steps for reporting a
    # damaged delivery; the warranty rules out "Damage from accidents"
    from bot.conversation.limits import problem_search, reported_problem
    from bot.conversation.words import stems

    policy = [{"title": "Damaged, faulty or wrong items", "heading": "Report it quickly",
               "text": "Please report transport damage within 48 hours of delivery."}]
    for text in ("i dropped my mug and it cracked, can i get a new one under warranty",
                 "I accidentally chipped the bowl I ordered", "my dog knocked the lamp over and now it's broken"):
        assert "accident" in stems(text), text
        assert not reported_problem(text, policy, {"mug", "bowl", "lamp", "chair"}), text
        # searched for as the warranty speaks of it
        assert problem_search(text, {"mug", "bowl", "lamp", "chair"}) == f"{text} (damage from accidents)", text
    assert problem_search("I accidentally ordered two lamps", {"lamp"}) == "I accidentally ordered two lamps"
    # the carrier's doing, or no damage at all, is no accident
    for text in ("the courier dropped my parcel and the vase is cracked", "I dropped off the parcel at the depot",
                 "they dropped the box on my doorstep and the mirror cracked",
                 "my parcel arrived and the mug is cracked", "I knocked on the door twice",
                 "we sat on the chair we bought and a leg snapped"):  # normal use: the warranty covers it
        assert "accident" not in stems(text), text
    assert reported_problem("my parcel arrived and the mug is cracked", policy) == {"damag"}


@pytest.mark.slow
def test_damage_the_customer_caused_is_answered_by_what_the_warranty_does_not_cover(sample_kb):
    from bot.conversation.responder import answered_by_kb

    responder = Responder(sample_kb, ScriptedGenerator().enqueue("I'm sorry to hear about your mug."),
                          company_name="Larkspur & Co.")
    text = "i dropped my mug and it broke, can i get a new one under warranty"
    passages = responder.retrieve(text, [])[0]
    # retrieval finds the warranty's claim and gift sections; what it rules out is in another section
    assert "what-is-not-covered" not in {p["anchor"] for p in passages}
    assert answered_by_kb(text, passages, sample_kb, {"mug"})
    result = responder.answer(text=text, intent="out_of_scope", tone="neutral", history=[])
    assert "I'm afraid not." in result.text and "Damage from accidents" in result.text, result.text
    assert "Report a problem" not in result.text
    assert result.citations[0]["anchor"] == "what-is-not-covered"


@pytest.mark.slow
def test_steps_that_merely_mention_the_asked_thing_give_way_to_a_section_named_for_it(sample_kb):
    # "I want to return a lamp" retrieved "When it is too late" (changing an order: "3. Return the unwanted
    # item ...") and the returns document's "Exchanges" and "Refunds without a return", not its steps
    responder = Responder(sample_kb, ScriptedGenerator().enqueue("Sure, I can help with that."),
                          company_name="Larkspur & Co.", products={"lamp", "rug"})
    passages = responder.retrieve("I want to return a lamp", [])[0]
    assert "register-your-return" not in {p["anchor"] for p in passages}
    result = responder.answer(text="I want to return a lamp", intent="out_of_scope", tone="neutral", history=[])
    assert "Here is how (Register your return):" in result.text, result.text
    assert "Press Start a return." in result.text and "Let the order arrive" not in result.text
    assert result.citations[0]["anchor"] == "register-your-return"
    # steps under a title that names what is asked stay (procedures.py: "How do I place an order?" got "How to
    # change your order" for a moment, "Step by step" of "Placing an order" naming neither word)
    placing = Responder(sample_kb, ScriptedGenerator().enqueue("Sure."), company_name="Larkspur & Co.",
                        products={"lamp", "rug"}).answer(text="How do I place an order?", intent="how_to",
                                                          tone="neutral", history=[])
    assert "Here is how (Step by step):" in placing.text, placing.text


@pytest.mark.slow
def test_a_dangerous_item_gets_the_kbs_safety_advice_first(sample_kb):
    # QA: "the lamp started sparking and smells like burning!!" got the model's request for the lamp's details;
    # the KB's "Safety first" came only as a fallback quote at the end
    responder = Responder(sample_kb, ScriptedGenerator().enqueue("Please send us the details of the lamp."),
                          company_name="Larkspur & Co.")
    result = responder.answer(text="the lamp started sparking and smells like burning!!", intent="out_of_scope",
                              tone="angry", history=[])
    assert "Our help pages say (Safety first): If a lamp, kettle or other electrical item sparks" in result.text
    assert "unplug it, stop using it" in result.text
    assert "Here is how" not in result.text and "details of the lamp" not in result.text, result.text
    assert result.citations[0]["anchor"] == "safety-first"


def test_the_safety_sentence_must_name_the_danger_reported():
    from bot.conversation.responder import hazard_answer

    sections = [{"heading": "Report it quickly", "text": "Please report transport damage within 48 hours."},
                {"heading": "Safety first", "text": "Keep the box. If an electrical item sparks or overheats, "
                                                    "unplug it and call us."}]
    section, sentence = hazard_answer("my kettle overheats", sections)
    assert section["heading"] == "Safety first" and sentence.startswith("If an electrical item sparks")
    assert hazard_answer("my kettle stopped working", sections) is None  # no danger named
    assert hazard_answer("there is smoke coming out of it", sections) is None  # a danger the KB does not name


@pytest.mark.slow
def test_a_generator_failing_after_the_kbs_steps_does_not_quote_them_again(sample_kb):
    generator = ScriptedGenerator().enqueue("I'm sorry to hear that. Let me look into it for you now.", fail_after=6)
    responder = Responder(sample_kb, generator, company_name="Larkspur & Co.", max_new_tokens=64)
    result = responder.answer(text="the chair i bought wobbles, one leg is shorter than the others", intent="out_of_scope",
                              tone="neutral", history=[])
    assert result.error and result.verdict == "fallback"
    assert "Here is how (Report it quickly):" in result.text, result.text
    assert result.text.count("Sign in and open My Account › Orders.") == 1, result.text
    assert "Report it quickly says" not in result.text


def test_a_damaged_or_wrong_item_is_searched_for_in_the_policys_words():
    from bot.conversation.limits import problem_search

    assert problem_search("i received someone elses order") == "i received someone elses order (wrong item)"
    assert problem_search("my chair wobbles", {"chair"}) == "my chair wobbles (damaged item)"  # a product it sells
    assert problem_search("my chair wobbles") == "my chair wobbles"  # no product named, no order, no parcel
    # not an item: a link, a code; and "doesn't work" alone names no damage to search for
    for text in ("the reset link is broken", "my discount code is broken", "the kettle doesn't work",
                 "how much is shipping?"):
        assert problem_search(text) == text


@pytest.mark.slow
def test_chatter_with_a_damage_word_is_no_damaged_item(sample_kb):
    # kb_scope: 13 of TweetEval's 14 test tweets with such a word were let in as damaged-item reports
    from bot.conversation.limits import in_knowledge_base, reported_problem
    from bot.conversation.words import stems

    responder = Responder(sample_kb, None, company_name="x")
    damaged = responder.retrieve("my lamp arrived broken", [])[0]
    for tweet in ("One day someone will change ur perspective from bitter to sweet from broken to complete",
                  "It's #AmazonPrimeDay! And I'm #broke. So in reality it just another day for me",
                  "So who actually leaked the info on jr. meeting with Russian lawyer?",
                  "@user I said that once and my pals ripped me a new arsehole"):
        assert not reported_problem(tweet, damaged), tweet
        assert not in_knowledge_base(tweet, responder.retrieve(tweet, [])[0]), tweet
    assert "damag" not in stems("I'm broke") and "damag" not in stems("the ice broke off")
    assert reported_problem("my lamp arrived broken", damaged) == {"damag"}
