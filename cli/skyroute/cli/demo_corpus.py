"""The words AcmeShop's customers type, as data for the demo's traffic generator.

The traffic generator (:mod:`skyroute.cli.demo_traffic`) needs text that looks
like a marketplace support copilot's real traffic, and the router's keyword
classifier needs that text to carry the phrases the AcmeShop policy
(``examples/acmeshop/policy.yaml``) lists for each intent. Keeping the phrases
here, as plain tables, separates "what customers say" from "how the sample is
drawn" (mix, repeats, arrival schedule), and makes it easy to check one table
against the policy's keyword lists when either changes.

FAQ intents get a few *canonical* questions, which popular traffic repeats
word for word (what an exact cache can hit), plus *cores*, openers and closers
that combine into paraphrases (what a semantic cache may hit, and what a
careful one should refuse when the meaning drifts). Every FAQ core keeps the
intent's keyword so the classifier agrees with the generator's ground truth;
the general conversations avoid those keywords on purpose, so that they fall
through to the policy's default pool as unlabelled traffic does in production.
"""

from __future__ import annotations

from typing import Any, Final

# --- FAQ: canonical questions (repeated verbatim) and paraphrase cores ---------------

FAQ_CANONICAL: Final[dict[str, tuple[str, ...]]] = {
    "faq.password": (
        "How do I reset my password?",
        "I forgot my password, how can I reset it?",
        "Reset password link not working",
        "How do I change my password?",
    ),
    "faq.pricing": (
        "What is the pricing for AcmeShop Plus?",
        "How much does the Plus membership cost?",
        "What is the pricing of the seller plans?",
        "Is there a student discount on the membership price?",
    ),
    "faq.refund": (
        "What is your refund policy?",
        "How long does a refund take?",
        "How do I get a refund for a damaged item?",
        "Can I get a refund without the original packaging?",
    ),
    "faq.shipping": (
        "How long does shipping take?",
        "Do you offer free shipping?",
        "What are the shipping costs to Canada?",
        "Can the shipping address still be edited after ordering?",
    ),
    "faq.account": (
        "How do I delete my account?",
        "How do I change the email on my account?",
        "How do I enable two-factor authentication on my account?",
        "Why is my account locked?",
    ),
}

FAQ_CORES: Final[dict[str, tuple[str, ...]]] = {
    "faq.password": (
        "how do I reset my password",
        "I can't remember my password, what do I do",
        "the reset password email never arrived",
        "can I reset my password from the mobile app",
        "my password reset code expired",
        "where do I change my password",
    ),
    "faq.pricing": (
        "what is the pricing for Plus",
        "how much is the membership per month",
        "is the annual plan price cheaper than monthly",
        "what is the pricing for business sellers",
        "does the Plus price include free returns",
    ),
    "faq.refund": (
        "what is the refund policy",
        "when will I see my refund",
        "can I get a refund on a sale item",
        "how do refunds work for marketplace sellers",
        "my refund still hasn't shown up on my card",
    ),
    "faq.shipping": (
        "how long does standard shipping take",
        "how fast is express shipping",
        "do you do international shipping",
        "what are the shipping options for large items",
        "is shipping free over 35 dollars",
    ),
    "faq.account": (
        "how do I close my account",
        "can I merge my two accounts into one account",
        "how do I update the phone number on my account",
        "my account got locked after too many logins",
        "how do I download my account data",
    ),
}

OPENERS: Final[tuple[str, ...]] = (
    "",
    "",
    "",
    "hi, ",
    "hello! ",
    "quick question: ",
    "hey, ",
    "hi there, ",
    "sorry to bother you, ",
    "good morning, ",
)
CLOSERS: Final[tuple[str, ...]] = (
    "?",
    "?",
    "?",
    "? thanks",
    "? thank you!",
    "? I'm on the app",
    "?? thx",
    ". please help",
    "? I'm in a hurry",
)

# --- Low-risk: order status and small talk ---------------------------------------------

ORDER_STATUS: Final[tuple[str, ...]] = (
    "Where is my order {order}?",
    "What's the order status for {order}?",
    "Can you check my order status? It's {order}",
    "track my order {order} please",
    "Has my order shipped yet? Order {order}",
)
SMALLTALK: Final[tuple[str, ...]] = (
    "hello",
    "thanks, that helped!",
    "thank you so much",
    "ok thanks",
    "hi!",
    "thanks for the help, bye",
    "hello, anyone there?",
    "great, thank you",
)

# --- General conversations: no FAQ keywords, several turns ---------------------------

GENERAL_OPENERS: Final[tuple[str, ...]] = (
    "The blender I bought last week makes a grinding noise when I turn it on.",
    "I received a blue jacket but I ordered the green one in size M.",
    "One of the items in my parcel is missing, the box had only two of three mugs.",
    "The seller hasn't answered my message for four days about a custom engraving.",
    "My coupon code WINTER20 says it is not valid for this item.",
    "I want to buy a gift for my dad who likes hiking, what would you suggest under 80 euros?",
    "The size chart for these running shoes is confusing, I'm usually a 42.",
    "The laptop stand I got wobbles a lot, is that normal for this model?",
    "My package says delivered but it's not at my door or with my neighbours.",
    "Can you help me write a message to the seller asking for a different colour?",
    "I was charged twice for the same order on my card statement.",
    "The product page says waterproof but the reviews say it leaks, which is true?",
    "I'd like to leave feedback about a rude delivery driver.",
    "Which of these two coffee grinders is quieter, the Kaffa 200 or the BrewMax?",
    "My gift card balance looks lower than it should be.",
)
GENERAL_FOLLOWUPS: Final[tuple[str, ...]] = (
    "I already tried that yesterday and it didn't change anything.",
    "Okay, and how long would that usually take?",
    "Can you explain that step again, I didn't get it.",
    "It's the one with the grey handle, bought on the 3rd.",
    "The seller is called NordicHome if that matters.",
    "Alright. Is there anything else I should check first?",
    "I don't have the receipt anymore, only the confirmation email.",
    "I'd prefer a replacement over store credit.",
)
ASSISTANT_TURNS: Final[tuple[str, ...]] = (
    "I'm sorry to hear that. Could you tell me the order number and when the item arrived, "
    "so I can look at the options the seller offers for this product?",
    "Thanks for the details. Based on what you describe, the first thing to try is to contact "
    "the seller through the order page; they usually answer within two business days.",
    "I understand. I've noted this on your case. Many customers in the same situation were "
    "able to get a replacement once the seller confirmed the defect with a photo.",
    "Got it. Let me summarise: the item arrived, it doesn't work as described, and you'd like "
    "a solution without paying again. Here is what I suggest we do next.",
)

# --- Complex reasoning: long context, compare or plan ---------------------------------

REASONING: Final[dict[str, tuple[str, ...]]] = {
    "reasoning.compare": (
        "Compare the Business and Enterprise plans for a {seats}-seat org and recommend one, "
        "with the total cost over two years.",
        "Please compare these three laptops for our design team and explain the tradeoffs.",
        "Compare the seller fee structures below for a shop selling {units} items a month.",
    ),
    "reasoning.plan": (
        "Make a step-by-step plan to migrate our {seats}-person team's purchasing to AcmeShop "
        "Business, including approvals and budgets.",
        "Draft a step-by-step plan for moving our storefront's {units} listings to the new "
        "catalogue format before the holiday season.",
        "Give me a step-by-step plan to reduce our return rate, using the data below.",
    ),
}
REASONING_CONTEXT: Final[tuple[str, ...]] = (
    "Plan: {name}. Seats included: {a}. Price per seat per month: {b} EUR. Storage: {c} GB. "
    "Support: {d}. Approval workflows: {e}. Invoicing: monthly, net {f} days.",
    "Item: {name}. Monthly volume: {a} units. Return rate: {b}%. Average basket: {c} EUR. "
    "Top complaint: {d}. Warehouse: {e}. Lead time: {f} days.",
)

# --- Tool plans: prompts plus OpenAI-format tool definitions ---------------------------

TOOL_PROMPTS: Final[dict[str, tuple[str, ...]]] = {
    "tools.invoice": (
        "Generate an invoice for order {order} and email it to the billing contact.",
        "I need an invoice with our VAT number for order {order}.",
        "Please create the invoice for order {order}, it was a business purchase.",
    ),
    "tools.ticket": (
        "Open a ticket with the seller about order {order}, the item arrived broken.",
        "Please open a support ticket, my replacement for {order} never came.",
        "Escalate this: open a ticket for order {order} and mark it urgent.",
    ),
    "tools.shipment": (
        "Update the shipment for order {order} to my office address at 12 Harbour Street.",
        "Please update shipment {order} to express delivery.",
        "Can you update the shipment for {order} so it is held at the pickup point?",
    ),
}


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> Any:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


_ORDER_ID: Final[dict[str, Any]] = {"type": "string", "description": "AcmeShop order id, A-123456"}

TOOLS: Final[dict[str, Any]] = {
    "create_invoice": _tool(
        "create_invoice",
        "Create an invoice for one order and send it to the billing contact.",
        {
            "order_id": _ORDER_ID,
            "vat_number": {"type": "string"},
            "email": {"type": "string", "format": "email"},
        },
        ["order_id"],
    ),
    "open_ticket": _tool(
        "open_ticket",
        "Open a support ticket with the seller or AcmeShop support.",
        {
            "order_id": _ORDER_ID,
            "summary": {"type": "string"},
            "priority": {"type": "string", "enum": ["low", "normal", "urgent"]},
        },
        ["order_id", "summary"],
    ),
    "update_shipment": _tool(
        "update_shipment",
        "Change the delivery address, speed or pickup point of a shipment not yet dispatched.",
        {
            "order_id": _ORDER_ID,
            "address": {"type": "string"},
            "speed": {"type": "string", "enum": ["standard", "express"]},
            "pickup_point": {"type": "string"},
        },
        ["order_id"],
    ),
    "lookup_order": _tool(
        "lookup_order",
        "Look up an order's items, status and tracking events.",
        {"order_id": _ORDER_ID},
        ["order_id"],
    ),
}
TOOLS_FOR_INTENT: Final[dict[str, tuple[str, ...]]] = {
    "tools.invoice": ("create_invoice", "lookup_order"),
    "tools.ticket": ("open_ticket", "lookup_order"),
    "tools.shipment": ("update_shipment", "lookup_order", "open_ticket"),
}

# --- Safety-sensitive questions --------------------------------------------------------

SAFETY: Final[dict[str, tuple[str, ...]]] = {
    "safety.medical": (
        "Is it safe to take this supplement with my blood pressure medication?",
        "Can I give this medical thermometer's readings to my doctor instead of a visit?",
        "The reviews say this herbal tea helps with anxiety, is that medical advice I can trust?",
    ),
    "safety.financial": (
        "Should I invest my refund in the AcmeShop seller stock program? I need financial advice.",
        "Is buy now pay later a good financial decision for a 1,200 euro TV?",
        "Can you give me financial advice on whether to open an AcmeShop credit card?",
    ),
}

# --- Who is asking ---------------------------------------------------------------------

# (name, share of traffic)
TENANTS: Final[tuple[tuple[str, float], ...]] = (
    ("acmeshop-web", 0.55),
    ("acmeshop-mobile", 0.35),
    ("acmeshop-sellers", 0.10),
)
LOCALES: Final[tuple[tuple[str, float], ...]] = (
    ("en-US", 0.52),
    ("en-GB", 0.14),
    ("de-DE", 0.12),
    ("fr-FR", 0.09),
    ("es-ES", 0.08),
    ("en-IN", 0.05),
)
USER_TIERS: Final[tuple[tuple[str, float], ...]] = (
    ("free", 0.70),
    ("plus", 0.25),
    ("business", 0.05),
)

SYSTEM_PROMPT: Final[str] = (
    "You are AcmeShop's support copilot, embedded in the {surface}. AcmeShop is a B2C "
    "marketplace: orders may be fulfilled by AcmeShop or by third-party sellers, and the "
    "order page says which. Answer in the customer's language ({locale}). Be brief and "
    "concrete: give the one next step the customer can take, then offer more detail. Never "
    "promise a refund, a delivery date or a price the order data does not show. If the "
    "customer asks for medical, legal or financial advice, say you cannot give it and point "
    "to a professional. Use the tools you are given for actions on orders; never claim an "
    "action was done unless a tool call confirmed it. Today's promotions: free standard "
    "shipping over 35 EUR for Plus members; 10% off refurbished "
    "electronics. Escalate to a human agent when the customer asks twice or is upset."
)
SURFACES: Final[dict[str, str]] = {
    "acmeshop-web": "website's help widget",
    "acmeshop-mobile": "mobile app's help tab",
    "acmeshop-sellers": "seller centre (the user is a seller, not a buyer)",
}
