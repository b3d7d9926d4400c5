"""What the policy rules out is answered with a no, and the model's yes never reaches the customer.

The small model says yes to almost anything ("Absolutely! We accept cheques."). These tests read the
sample company's real policy files; the replies that need the whole responder use real MiniLM
retrieval over them and a scripted model reply (the yes the real model was seen to write).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sample_kb import kb_service as _kb

from bot.conversation.guardrails import BESIDE_KB_ANSWER, Grounder
from bot.conversation.limits import asked_limit, contradicts, covers, limits
from bot.conversation.policy import decide
from bot.conversation.responder import Responder, limit_statement
from models.generation import ScriptedGenerator

SAMPLE = Path(__file__).resolve().parents[2] / "knowledge" / "sample"


def _doc_limits(name: str):
    text = (SAMPLE / f"{name}.md").read_text(encoding="utf-8").split("---", 2)[-1]
    return limits([{"text": text, "document_id": name}])


# questions about something the sample KB rules out, and the sentence that rules it out
ASKED = [
    ("payment-methods", "Can I pay by bank transfer?", "We do not accept cash on delivery"),
    ("payment-methods", "How do I pay by bank transfer?", "We do not accept cash on delivery"),
    ("payment-methods", "Do you accept cheques?", "We do not accept cash on delivery"),
    ("business-invoices", "Can my company pay on account?", "We do not offer payment on account"),
    ("shipping-addresses", "Can you deliver to a PO box?", "We cannot deliver to PO boxes"),
    ("large-item-delivery", "Is assembly included with the sofa delivery?", "Assembly is not included."),
    ("cancelling-an-order", "Can I cancel my order after it has shipped?", "A shipped order can no longer"),
    ("gift-cards", "Can I exchange my gift card for cash?", "Gift cards themselves cannot be returned"),
    ("gift-cards", "Can I use a gift card to buy another gift card?", "A gift card cannot be used to buy"),
    ("returns-policy", "Can I return a pillow after opening the seal?", "we cannot take back pillows"),
    ("delivery-options", "Can I get next-day delivery for a made-to-order table?", "next-day delivery is not possible"),
    ("deleting-your-account", "Can I delete my account while a refund is pending?", "Deletion is not possible"),
    # the thing in an aside, and a pronoun pointing back to it
    ("payment-methods", "Can I split my payment over two cards?", "Other combinations, such as two cards"),
    ("newsletter", "Can I switch off order confirmation e-mails?", "you cannot switch them off"),
    # "exchange" is what "We do not swap items directly" rules out
    ("returning-an-item", "Can I exchange an item for a different colour?", "We do not swap items directly."),
]
# questions about what the same documents allow: no limit may answer them
NOT_ASKED = [
    ("cancelling-an-order", "How do I cancel my order?"),
    ("gift-cards", "How do I use a gift card?"),
    ("gift-cards", "Can I buy a gift card?"),
    ("payment-methods", "What payment methods do you accept?"),
    ("payment-methods", "How do I save a card?"),
    ("deleting-your-account", "How do I delete my account?"),
    ("delivery-options", "Can I get next-day delivery?"),
    ("returns-policy", "Can I return a lamp?"),
    ("price-match", "How do I ask for a price match?"),
    ("payment-methods", "Can I pay with a gift card and a card?"),
    ("newsletter", "How do I unsubscribe from the newsletter?"),
]


@pytest.mark.parametrize(("doc", "question", "sentence"), ASKED)
def test_a_question_about_what_the_policy_rules_out_finds_its_sentence(doc, question, sentence):
    found = asked_limit(question, _doc_limits(doc))
    assert found is not None and sentence in found.sentence, question


@pytest.mark.parametrize(("doc", "question"), NOT_ASKED)
def test_a_question_about_what_the_policy_allows_finds_none(doc, question):
    found = asked_limit(question, _doc_limits(doc))
    assert found is None, (question, found and found.sentence)


def test_reliefs_conditions_and_instructions_rule_nothing_out():
    # "you do not have to wait", "we usually do not need the broken one back", "If the item cannot be carried"
    for doc in ("damaged-or-faulty-items", "large-item-delivery", "contact-customer-service"):
        for limit in _doc_limits(doc):
            assert not limit.sentence.startswith(("If ", "Please ", "For small items")), limit
            assert "have to wait" not in limit.sentence
    # the reason after "because" is not part of the thing ruled out
    po_box = next(lim for lim in _doc_limits("shipping-addresses") if "PO boxes" in lim.sentence)
    assert "signatur" not in po_box.thing and "parcel" not in po_box.thing


def _section_limits(name: str):
    """The limits of a document read section by section, as retrieval returns it (with headings)."""
    from knowledge.chunking import chunk_markdown

    text = (SAMPLE / f"{name}.md").read_text(encoding="utf-8").split("---", 2)[-1]
    return limits([{"text": c.body, "heading": c.heading, "document_id": name} for c in chunk_markdown(text, name)])


# a heading that rules out what its list names ("What you cannot return", "What is not covered"); seen
# answered yes by the real model before these were read
UNDER_A_HEADING = [
    ("warranty", "Does the warranty cover scratches on my wooden table?", "Normal wear: fading textiles"),
    ("returns-policy", "Can I return curtains that were cut to measure?", "Cut-to-measure curtains"),
    ("returns-policy", "Can I return a personalised engraved chopping board if I changed my mind?",
     "Personalised or engraved items."),
    ("changing-an-order", "Can I change my order after it has been packed?", "An order that is already Packed"),
    ("changing-an-order", "Can I change the payment method on an order I already placed?", "The payment method."),
]
NOT_UNDER_A_HEADING = [
    ("warranty", "Does the warranty cover my sofa frame?"),
    ("changing-an-order", "Can I change my order?"),
    ("changing-an-order", "Can I change my shipping address?"),  # not "Shipped" alone
    ("editing-your-account", "Can I change my contact details?"),  # "Merging two accounts: contact us, ..."
    ("returns-policy", "Can I return a lamp?"),
    # a limit on changing an order answers no question about cancelling it (seen: "I'm afraid not", quoting
    # "What you cannot change"; a packed order can still be cancelled, for a fee)
    ("changing-an-order", "Can I cancel my order after it has been packed?"),
    ("changing-an-order", "can i return it once it is delivered"),
    # QA: "I'm afraid not ... A shipped order can no longer be cancelled" to an order not shipped yet
    ("cancelling-an-order", "urgent!! i need to cancel my order before it ships, it's for the wrong address"),
    ("cancelling-an-order", "can i still cancel until it is shipped?"),
]


@pytest.mark.parametrize(("doc", "question", "sentence"), UNDER_A_HEADING)
def test_a_list_under_a_heading_that_rules_things_out_is_read(doc, question, sentence):
    found = asked_limit(question, _section_limits(doc))
    assert found is not None and found.sentence.startswith(sentence), (question, found and found.sentence)
    assert found.passage["heading"].startswith(("What you cannot", "What is not"))


@pytest.mark.parametrize(("doc", "question"), NOT_UNDER_A_HEADING)
def test_a_question_beside_such_a_list_finds_none(doc, question):
    found = asked_limit(question, _section_limits(doc))
    assert found is None, (question, found and found.sentence)


def test_a_list_shares_its_last_word_only_when_the_items_before_are_no_things_of_their_own():
    emails = {lim.thing for lim in _doc_limits("newsletter") if "switch them off" in lim.sentence}
    assert frozenset({"order", "email"}) in emails and frozenset({"account", "email"}) in emails
    # "pillows, duvets and mattress protectors": pillows are no kind of protector
    pillows = {lim.thing for lim in _doc_limits("returns-policy") if "pillows" in lim.sentence}
    assert frozenset({"pillow"}) in pillows and frozenset({"pillow", "protector"}) not in pillows


def test_what_to_do_instead_comes_with_the_no_when_the_kb_says_it_next():
    swap = asked_limit("Can I swap my item for another one directly?", _doc_limits("returning-an-item"))
    assert swap is not None and swap.then.startswith("Return the item and order the one you want")
    assert swap.then in limit_statement("Can I swap my item for another one directly?", swap)
    # the opening of a list ("You have two options, both free of a cancellation fee:") is not given alone
    shipped = asked_limit("Can I cancel my order after it has shipped?", _doc_limits("cancelling-an-order"))
    assert shipped is not None and shipped.then == ""
    # nor is another rule ("Gift cards are not tied to an account, ...")
    another = asked_limit("Can I use a gift card to buy another gift card?", _doc_limits("gift-cards"))
    assert another is not None and another.then == ""


def test_a_sentence_saying_the_opposite_is_caught_and_a_qualified_one_is_not():
    payment = _doc_limits("payment-methods")
    cancelling = _doc_limits("cancelling-an-order")
    assert contradicts("We accept cheques.", payment)
    assert contradicts("You can pay by bank transfer at checkout.", payment)
    assert not contradicts("We do not accept cheques.", payment)
    assert not contradicts("We accept Visa, Mastercard and PayPal.", payment)
    assert not contradicts("You would like to pay by bank transfer.", payment)
    assert contradicts("Once your order has shipped, you can cancel it in My Account.", cancelling)
    assert not contradicts("If your order has not shipped yet, you can cancel it.", cancelling)
    assert not contradicts("You can cancel your order before it has shipped.", cancelling)
    # a bare yes is the model's answer only to a question about a ruled-out thing
    assert not contradicts("Certainly!", payment)
    cheques = asked_limit("Do you accept cheques?", payment)
    assert contradicts("Certainly!", payment, cheques) is cheques
    assert contradicts("You can place a cheque with us and we'll process it.", payment, cheques) is cheques
    assert not contradicts("Our team is happy to help with anything else.", payment, cheques)


def test_an_unsure_intent_still_gets_an_answer_when_the_kb_covers_the_question():
    class NLU:
        intent, confidence, out_of_scope, reason = "out_of_scope", 0.2, True, "low_confidence"

        class tone:  # noqa: N801
            label = "neutral"

    state: dict = {}
    decision = decide("Can I pay cash on delivery?", NLU(), state, in_knowledge_base=True)
    assert (decision.action, decision.reason) == ("answer", "in_knowledge_base")
    assert state["low_confidence_streak"] == 0  # answered: not a step towards a handoff
    assert decide("What's the weather like?", NLU(), state).action == "clarify"
    assert decide("And tomorrow?", NLU(), state).action == "handoff"  # two unsure turns in a row


@pytest.fixture(scope="module")
def knowledge(tmp_path_factory):
    names = ("payment-methods", "cancelling-an-order", "returns-policy", "delivery-options", "gift-cards")
    yield from _kb(tmp_path_factory, "limits", [SAMPLE / f"{n}.md" for n in names])


def _ask(knowledge, question: str, reply: str, history: list[tuple[str, str]] | None = None, **kw):
    responder = Responder(knowledge, ScriptedGenerator().enqueue(reply), company_name="Larkspur & Co.",
                          max_new_tokens=96, **kw)
    return responder.answer(text=question, intent="check_payment_methods", tone="neutral", history=history or [])


YES = ("Certainly! We accept all the payment methods you mentioned, including bank transfer. You can pay by "
       "bank transfer at checkout. If you have any questions, our team is happy to help.")


@pytest.mark.slow
def test_a_ruled_out_thing_is_answered_no_in_the_policys_words(knowledge):
    result = _ask(knowledge, "Can I pay by bank transfer?", YES)
    assert result.text.startswith("I'm afraid not. Our help pages say"), result.text
    assert "We do not accept cash on delivery, cheques or payment by bank transfer in advance." in result.text
    assert "Certainly" not in result.text and "including bank transfer" not in result.text
    assert "You can pay by bank transfer" not in result.text
    assert "our team is happy to help" in result.text  # the rest of the reply stays
    assert result.citations[0]["document_id"] == "payment-methods"
    assert result.guardrail["added_limit"].startswith("I'm afraid not.")
    # the baseline without limits shows the model's yes: the check above can fail
    baseline = _ask(knowledge, "Can I pay by bank transfer?", YES, limits=False)
    assert "You can pay by bank transfer" in baseline.text and "added_limit" not in baseline.guardrail


@pytest.mark.slow
def test_after_the_no_only_an_apology_the_request_said_back_and_an_offer_of_help_stay(knowledge):
    # seen with the real model after the correct no: it wrote the rest as if the answer were yes
    reply = ("I understand that you would like to cancel your order after it has shipped. We have a "
             "cancellation policy in place to ensure that you can easily cancel your order. There, you will "
             "find the option to change your order. If you have any further questions, our support team is "
             "available to help.")
    result = _ask(knowledge, "Can I cancel my order after it has shipped?", reply)
    assert result.text.startswith("I'm afraid not."), result.text
    assert "A shipped order can no longer be cancelled." in result.text
    assert "I understand that you would like to cancel your order" in result.text
    assert "our support team is available to help" in result.text
    assert "easily cancel" not in result.text and "There, you will find" not in result.text
    assert [d.split()[:2] for d in result.guardrail["dropped"]] == [["We", "have"], ["There,", "you"]]
    # a question about what the policy allows is answered by its procedure, not with a no
    allowed = _ask(knowledge, "Can I cancel my order?", reply)
    assert not allowed.text.startswith("I'm afraid") and "Here is how (Cancel it yourself):" in allowed.text
    # without the KB's answer (no procedures: the benchmarks' baseline) the model's content stays
    baseline = _ask(knowledge, "Can I cancel my order?", reply, procedures=False)
    assert "easily cancel your order" in baseline.text, baseline.text


def test_after_a_no_the_guardrail_says_why_it_drops_the_rest():
    limit = asked_limit("Do you accept cheques?", _doc_limits("payment-methods"))
    grounder = Grounder(lambda _slot: None, [limit.sentence], limits=[limit], asked_limit=limit)
    assert grounder.check_sentence("We offer a wide range of payment options.").reason == BESIDE_KB_ANSWER
    assert grounder.check_sentence("I'm sorry for the inconvenience.").kept
    assert grounder.check_sentence("Let us know if there is anything else we can do.").kept


@pytest.mark.slow
def test_a_how_to_question_about_a_ruled_out_thing_gets_no_made_up_steps(knowledge):
    reply = ("Of course! Here's how:\n1. Go to checkout.\n2. Choose bank transfer.\n"
             "If you need anything else, just ask.")
    result = _ask(knowledge, "How do I pay by bank transfer?", reply)
    assert result.text.startswith("I'm afraid that isn't possible."), result.text
    assert "1." not in result.text and "Choose bank transfer" not in result.text
    assert "no_documented_procedure" not in result.guardrail  # the answer is the no, not "no steps known"


@pytest.mark.slow
def test_what_the_policy_allows_keeps_its_answer(knowledge):
    result = _ask(knowledge, "What payment methods do you accept?",
                  "We accept {{Accepted Payment Methods}}. Let us know if you need anything else.")
    assert "added_limit" not in result.guardrail
    assert not result.text.startswith("I'm afraid")
    assert "Visa, Mastercard" in result.text


@pytest.mark.slow
def test_the_kb_covers_its_own_questions_and_not_chatter(knowledge):
    def passages(q):
        return Responder(knowledge, None, company_name="x").retrieve(q, [])[0]

    assert covers("Can I pay cash on delivery?", passages("Can I pay cash on delivery?"))
    assert covers("Can I return a pillow after opening the seal?",
                  passages("Can I return a pillow after opening the seal?"))
    for chatter in ("What's the weather going to be like in Utrecht tomorrow?", "Tell me a joke about cats.",
                    "Who won the football match last night?"):
        assert not covers(chatter, passages(chatter)), chatter


@pytest.mark.slow
def test_a_ruled_out_thing_said_in_passing_is_dropped_even_when_retrieval_returned_part_of_its_section(knowledge):
    # "Can I pay with Klarna?" retrieves part of "How each method works", without the sentence that rules
    # bank transfers out; the whole top document is read for it (without the KB's own answers, which
    # would answer this one with the KB's line about Klarna, the model's sentences are checked one by one)
    result = _ask(knowledge, "Can I pay with Klarna?",
                  "We accept payment methods like credit cards, debit cards, and bank transfers. "
                  "Klarna lets you pay later.", procedures=False)
    assert "bank transfers" not in result.text, result.text
    assert "Klarna lets you pay later." in result.text


def test_a_retrieved_passage_with_its_list_joined_gives_the_sentence_without_the_marker():
    # retrieval returns a section's lines joined: "... app. - **We cannot deliver to PO boxes**, because ..."
    joined = {"text": "Use your full address. - **We cannot deliver to PO boxes**, because parcels need a signature."}
    found = asked_limit("Can you deliver to a PO box?", limits([joined]))
    assert found is not None and found.sentence == "We cannot deliver to PO boxes, because parcels need a signature."


def test_the_shops_product_names_give_words_a_policy_about_items_covers():
    from bot.conversation.limits import product_words

    words = product_words(["Brass reading lamp", "Jute rug 160x230", "Carbon-steel frying pan 28 cm",
                           "Wool throw 130x170, rust"])
    assert {"lamp", "rug", "pan", "throw"} <= words
    assert not any(w[0].isdigit() for w in words) and "cm" not in words and "rust" not in words
    returns = [{"title": "Returns policy", "text": "You can return most items within 30 days of delivery."}]
    assert covers("Can I return a lamp?", returns, words)
    assert not covers("Can I return a lamp?", returns)  # the policy never says "lamp"
    assert not covers("Tell me a joke about a lamp.", returns, words)
    # a passage that is not about items does not cover a product word
    assert not covers("Can I return a lamp?", [{"text": "Returns of gift cards are not possible."}], words)


# --- what a list names, and nothing else ("We accept Visa, ..."; "We charge in euros only") -----------

@pytest.fixture(scope="module")
def similarity():
    """How alike two phrases are to the real MiniLM model the retriever embeds with."""
    from knowledge.embeddings import make_llama_embedding
    from knowledge.index import Embedder

    embedder = Embedder(make_llama_embedding())

    def alike(phrase: str, others: list[str]) -> list[float]:
        vectors = embedder.texts([phrase, *others])
        return [float(vectors[0] @ v) for v in vectors[1:]]

    return alike


def _sections(*names: str):
    from knowledge.chunking import chunk_markdown

    out = []
    for name in names:
        text = (SAMPLE / f"{name}.md").read_text(encoding="utf-8").split("---", 2)[-1]
        out += [{"text": c.body, "heading": c.heading, "title": name, "document_id": name}
                for c in chunk_markdown(text, name)]
    return out


# a yes/no question about a thing of the list's kind it does not name; seen answered yes by the real model
OUTSIDE = [
    ("payment-methods", "Do you accept Bitcoin?", "We accept Visa, Mastercard", True),
    ("payment-methods", "Can I pay for my order with Bitcoin?", "We accept Visa, Mastercard", True),
    ("payment-methods", "Can I pay in dollars?", "We charge in euros only.", True),
    ("payment-methods", "Do you accept payment in British pounds or US dollars?", "We charge in euros only.", True),
    # "Amex" is American Express under another name, too alike to say no: the list is shown without one
    ("payment-methods", "Can I pay with Amex?", "We accept Visa, Mastercard", False),
    # a name of its own beside a listed head word ("Apple Pay", "gift cards"): of the kind, and not listed
    ("payment-methods", "Can I pay with Google Pay?", "We accept Visa, Mastercard", False),
    ("payment-methods", "Do you accept Maestro cards?", "We accept Visa, Mastercard", False),
    # a list with a category in it ("every country of the European Union"): shown, without a no
    ("international-shipping", "Do you ship to the United States?", "We ship parcels from Utrecht", False),
    ("international-shipping", "Do you deliver to Germany?", "We ship parcels from Utrecht", False),
]
NOT_OUTSIDE = [
    ("payment-methods", "Do you accept credit cards?"),  # "cards" are the list's own word
    ("payment-methods", "Do you accept Visa debit cards?"),  # its name is a listed one
    ("payment-methods", "Do you accept Apple Pay?"),
    ("payment-methods", "Can I pay with Klarna?"),
    ("payment-methods", "Can I pay in instalments?"),  # not a currency
    ("payment-methods", "What payment methods do you accept?"),  # not a yes/no question
    ("international-shipping", "Do you ship to Norway?"),
    ("international-shipping", "How much does shipping to Germany cost?"),
    ("returns-policy", "Do you accept returns after 30 days?"),
    ("returns-policy", "Can I return items bought in a store?"),
]


@pytest.mark.parametrize(("doc", "question", "sentence", "says_no"), OUTSIDE)
def test_a_thing_of_a_listed_kind_the_list_does_not_name_is_answered_with_the_list(
        doc, question, sentence, says_no, similarity):
    from bot.conversation.limits import asked_outside

    found = asked_outside(question, _sections(doc, "returns-policy"), similarity)
    assert found is not None and found.sentence.startswith(sentence), (question, found and found.sentence)
    assert found.says_no is says_no
    assert limit_statement(question, found).startswith("I'm afraid not.") is says_no


@pytest.mark.parametrize(("doc", "question"), NOT_OUTSIDE)
def test_a_listed_thing_or_a_thing_of_another_kind_finds_no_list(doc, question, similarity):
    from bot.conversation.limits import asked_outside

    found = asked_outside(question, _sections(doc, "returns-policy"), similarity)
    assert found is None, (question, found and found.sentence)


def test_a_restriction_needs_its_subject_named():
    from bot.conversation.limits import listings

    furniture = [x for x in listings(_sections("international-shipping")) if x.link == "only"]
    assert furniture and furniture[0].items == ("Netherlands", "Belgium")
    assert furniture[0].subject >= {"furnitur"}
    euros = [x for x in listings(_sections("payment-methods")) if x.link == "only"]
    assert euros[0].items == ("euros",) and not euros[0].subject  # "We charge": the verb is not asked for


@pytest.fixture(scope="module")
def listed(tmp_path_factory):
    names = ("payment-methods", "international-shipping", "delivery-options", "returns-policy")
    yield from _kb(tmp_path_factory, "listed", [SAMPLE / f"{n}.md" for n in names])


@pytest.mark.slow
def test_a_yes_to_what_the_list_does_not_name_never_reaches_the_customer(listed):
    reply = ("Certainly! We accept Bitcoin as a payment method. You can choose Bitcoin at checkout. "
             "If you have any questions, our team is happy to help.")
    result = _ask(listed, "Do you accept Bitcoin?", reply)
    assert result.text.startswith("I'm afraid not. Our help pages say (Payment methods): We accept Visa,"), result.text
    assert "Certainly" not in result.text and "Bitcoin" not in result.text
    assert "our team is happy to help" in result.text
    baseline = _ask(listed, "Do you accept Bitcoin?", reply, limits=False)
    assert "We accept Bitcoin" in baseline.text  # the check above can fail

    shipped = _ask(listed, "Do you ship to the United States?",
                   "We do ship to the United States. You can place an order with us and we'll deliver it to "
                   "your address. Let us know if you need anything else.")
    assert shipped.text.startswith("Our help pages say (International shipping): We ship parcels"), shipped.text
    assert "We do ship to the United States" not in shipped.text and "I'm afraid" not in shipped.text


LISTED = [
    ("Can I pay with Klarna?", "Klarna (pay later): you receive the goods first"),
    ("Do you accept PayPal?", "PayPal: you are taken to PayPal"),
    ("Can I pay for my order with Visa?", "Cards (Visa, Mastercard, American Express): charged"),
    ("Do you accept iDEAL or Apple Pay?", "We accept Visa, Mastercard"),
    ("Can I pay in euros?", "We charge in euros only."),
    ("Do you ship to Norway?", "We ship parcels from Utrecht"),
]
NOT_LISTED = [
    "Can I pay with Klarna for a gift card?",  # more than the list says
    "Do you accept credit cards?",  # not one of the listed names
    "Do you accept Bitcoin?",
    "How do I pay with Klarna?",  # not a yes/no question
]


@pytest.mark.parametrize(("question", "said"), LISTED)
def test_a_plain_question_about_a_listed_thing_is_answered_by_the_kb(question, said):
    from bot.conversation.limits import asked_listed

    found = asked_listed(question, _sections("payment-methods", "international-shipping"))
    assert found is not None and found[1].startswith(said), (question, found)


@pytest.mark.parametrize("question", NOT_LISTED)
def test_a_question_the_list_does_not_settle_gets_no_list_answer(question):
    from bot.conversation.limits import asked_listed

    assert asked_listed(question, _sections("payment-methods", "international-shipping")) is None


@pytest.mark.parametrize("question", ["Do you accept credit cards?", "Can I pay by debit card?",
                                      "Do you take Maestro cards?"])
def test_a_kind_the_list_groups_under_a_label_gets_that_line(question):
    from bot.conversation.limits import asked_kind

    found = asked_kind(question, _sections("payment-methods", "international-shipping"))
    assert found is not None and found[1].startswith("Cards (Visa, Mastercard, American Express): charged"), found


@pytest.mark.parametrize("question", ["Do you accept gift cards?",  # listed: asked_listed's, with a yes
                                      "Do you accept cards?", "Do you accept Visa?",
                                      "Can I pay with a credit card for a gift card?",  # more than the list says
                                      "Do you accept store cards from other shops?", "Do you ship to Norway?",
                                      "Do you accept credit card payments?"])  # not a card: a payment
def test_other_things_get_no_labelled_line(question):
    from bot.conversation.limits import asked_kind

    assert asked_kind(question, _sections("payment-methods", "international-shipping")) is None


@pytest.mark.slow
def test_a_kind_of_listed_thing_gets_the_kbs_line_about_it_and_no_yes(listed):
    # seen with the real model: "... we accept a wide range of payment methods, including credit cards,
    # debit cards, and many others"
    reply = ("Yes, we accept a wide range of payment methods, including credit cards, debit cards, and many "
             "others. If you have any questions, our team is happy to help.")
    result = _ask(listed, "Do you accept credit cards?", reply)
    assert result.text.startswith("Our help pages say (How each method works): Cards (Visa, Mastercard, "
                                  "American Express): charged"), result.text
    assert "many others" not in result.text and "our team is happy to help" in result.text
    baseline = _ask(listed, "Do you accept credit cards?", reply, limits=False)
    assert "many others" in baseline.text


@pytest.mark.slow
def test_a_listed_thing_gets_a_yes_in_the_kbs_words_and_not_the_models_account(listed):
    # seen with the real model: "Certainly! You can place an order with Klarna and proceed to pay with your
    # credit or debit card."
    reply = ("Certainly! You can place an order with Klarna and proceed to pay with your credit or debit card. "
             "If you have any questions, our team is happy to help.")
    result = _ask(listed, "Can I pay with Klarna?", reply)
    assert result.text.startswith("Yes. Our help pages say (How each method works): Klarna (pay later):"), result.text
    assert "credit or debit card" not in result.text and "Certainly" not in result.text
    assert "our team is happy to help" in result.text and "added_listed" in result.guardrail
    baseline = _ask(listed, "Can I pay with Klarna?", reply, limits=False)
    assert "credit or debit card" in baseline.text


@pytest.mark.parametrize(("question", "said"), [
    ("What payment methods do you accept?", "We accept Visa, Mastercard"),
    ("Which payment methods can I use?", "We accept Visa, Mastercard"),
    ("Which countries do you ship to?", "We ship parcels from Utrecht"),
    ("Where do you deliver?", "We ship parcels from Utrecht"),
])
def test_a_question_for_what_a_list_holds_is_answered_by_the_list(question, said):
    from bot.conversation.limits import asked_for_list

    found = asked_for_list(question, _sections("payment-methods", "international-shipping"))
    assert found is not None and found[1].startswith(said), (question, found)


@pytest.mark.parametrize("question", ["What is the delivery time to Norway?", "How do I pay with Klarna?",
                                      "What happens if my payment is declined?", "What returns do you accept?",
                                      "What courier do you use?", "What items do you deliver?",
                                      "What time do you take orders until?"])
def test_other_questions_are_not_answered_by_a_list(question):
    from bot.conversation.limits import asked_for_list

    assert asked_for_list(question, _sections("payment-methods", "international-shipping")) is None


@pytest.mark.slow
def test_what_a_list_holds_is_the_lists_sentence_not_a_figure_of_its_document(listed):
    result = _ask(listed, "Which countries do you ship to?",
                  "We ship to many countries around the world, including the United States and Canada.")
    assert result.text.startswith("Our help pages say (International shipping): We ship parcels"), result.text
    assert "United States" not in result.text and "Delivery time" not in result.text


@pytest.mark.parametrize(("question", "previous", "asking"), [
    ("and Bitcoin?", "Which payment methods do you accept?", "Do you accept Bitcoin?"),
    ("what about with Klarna?", "Can I pay with PayPal?", "Can I pay with Klarna?"),
    ("And Norway?", "Do you ship to Germany?", "Do you ship to Norway?"),
    ("or the United States?", "Which countries do you ship to?", "Do you ship to the United States?"),
    ("and for made-to-order furniture?", "What is the cancellation fee?", "and for made-to-order furniture?"),
    ("and how long does that take?", "Do you ship to Germany?", "and how long does that take?"),
    ("and Bitcoin?", None, "and Bitcoin?"),
])
def test_a_follow_up_naming_a_thing_is_asked_as_the_previous_list_question(question, previous, asking):
    from bot.conversation.limits import follow_up_question

    assert follow_up_question(question, previous) == asking


@pytest.mark.slow
def test_a_follow_up_about_a_thing_the_list_leaves_out_gets_the_kbs_no(listed):
    # seen with the real model (QA): "We accept Bitcoin! You can use it for various transactions ..."
    reply = "We accept Bitcoin! You can use it for purchases and gift cards. Let us know if you need anything else."
    history = [("customer", "Which payment methods do you accept?"),
               ("assistant", "We accept Visa, Mastercard, American Express, PayPal, iDEAL, Apple Pay, Klarna ...")]
    result = _ask(listed, "and Bitcoin?", reply, history=history)
    assert result.text.startswith("I'm afraid not. Our help pages say (Payment methods): We accept Visa,"), result.text
    assert "We accept Bitcoin" not in result.text
    assert "We accept Bitcoin" in _ask(listed, "and Bitcoin?", reply, history=history, limits=False).text


def test_a_question_a_retrieved_sentence_rules_out_is_in_the_knowledge_base():
    # the intent model calls it out of scope and no passage holds two thirds of its words; the KB's
    # "We do not swap items directly" still answers it (QA: the customer was asked to rephrase)
    from bot.conversation.limits import in_knowledge_base

    text = (SAMPLE / "returning-an-item.md").read_text(encoding="utf-8").split("---", 2)[-1]
    exchanges = [{"document_id": "returning-an-item", "heading": "Exchanges",
                  "text": text.split("## Exchanges", 1)[1].split("\n## ", 1)[0]}]
    question = "Can I exchange an item for a different colour?"
    assert not covers(question, exchanges)
    assert in_knowledge_base(question, exchanges)
    assert not in_knowledge_base("Can I exchange my old phone number?", exchanges)


def test_how_the_customer_paid_is_not_what_they_ask_to_return():
    # QA: "how do i get my money back if i paid with a gift card" got "I'm afraid that isn't possible. Our help
    # pages say (What you cannot return): Gift cards."
    returns = _doc_limits("returns-policy") + _doc_limits("gift-cards")
    for paid in ("how do i get my money back if i paid with a gift card",
                 "Can I return a lamp I bought with a gift card?"):
        found = asked_limit(paid, returns)
        assert found is None or "gift" not in found.thing, (paid, found)
    returned = asked_limit("Can I return a gift card?", _doc_limits("gift-cards"))
    assert returned is not None and "gift" in returned.thing
    # a limit on paying still reads the means of payment
    payment = _doc_limits("payment-methods")
    assert asked_limit("Can I pay by bank transfer?", payment) is not None
