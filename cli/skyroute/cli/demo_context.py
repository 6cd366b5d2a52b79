"""What the copilot app attaches to a question: retrieved articles and order data.

Real support-copilot prompts are mostly context, not question: the system
instructions, the help-centre articles a retriever found for the topic, and
for questions about the customer's own orders, those orders. That is why
such traffic is input-heavy (about 1.1k prompt tokens for a one-line
question here) and why the cost of a model is dominated by its input price
for short answers.

The split matters to caching: articles depend only on the topic, so two
customers asking the same FAQ in the same tenant and locale send the same
context, and a cache partitioned by context may serve the second one; order
data is per customer and is attached only to non-FAQ conversations, because
it would make every FAQ prompt unique (and serving one customer's answer to
another would be wrong anyway).
"""

from __future__ import annotations

from typing import Final

# --- Retrieved help-centre articles ---------------------------------------------------

ARTICLES: Final[dict[str, str]] = {
    "password": (
        "Article 1042 - Signing in and passwords. To reset a password, choose 'Forgot "
        "password' on the sign-in page and enter the email address of the account. A reset "
        "link valid for 30 minutes is sent to that address; only the most recent link works. "
        "Links open in the app when it is installed, otherwise in the browser. If no email "
        "arrives within five minutes, check the spam folder and any filters, then request a "
        "new link; after five requests in one hour the account is protected for one hour and "
        "the customer must wait. Customers who signed up with Google or Apple have no AcmeShop "
        "password and must reset it with that provider. Changing a password signs out every "
        "other device. Passwords need at least 10 characters and may not repeat the last three. "
        "Agents never ask for a password and never send one by chat or email."
    ),
    "pricing": (
        "Article 2210 - Memberships and prices. AcmeShop Plus costs 7.99 EUR per month or 69 "
        "EUR per year (annual saves 28%), with a 30-day free trial once per customer. Plus "
        "includes free standard shipping on orders over 35 EUR, free returns on items sold by "
        "AcmeShop, early access to sales and 5% back in AcmeShop credit on electronics. "
        "Students with a verified university email get 50% off Plus for up to four years. "
        "Seller plans: Basic has no monthly fee and charges 12% commission per sale; "
        "Professional costs 39 EUR per month and charges 8%; Business plans for more than "
        "5,000 orders a month are quoted by the sales team. Prices include VAT for consumers "
        "in the EU and the UK. Price changes are announced 30 days ahead by email; a member can "
        "cancel before the new price applies and get a prorated refund of the unused period."
    ),
    "refund": (
        "Article 3305 - Returns and refunds. Most items can be returned within 30 days of "
        "delivery; electronics within 14 days; hygiene products, custom items and digital "
        "codes cannot be returned once opened. Start a return from the order page: choose the "
        "item, a reason, and drop-off or pickup. Items sold by AcmeShop are refunded within 3 "
        "business days of reaching the warehouse; items sold by marketplace sellers are "
        "refunded by the seller within 5 business days, and AcmeShop's guarantee covers the "
        "customer if the seller does not answer within 3 days. Refunds go to the original "
        "payment method; banks may take 5-10 further days to show them. Damaged or wrong "
        "items are refunded in full including shipping and need a photo. Missing original "
        "packaging may reduce the refund by up to 15% for resaleable goods."
    ),
    "shipping": (
        "Article 4120 - Shipping and delivery. Standard shipping takes 2-4 business days in "
        "Germany, France, Spain and the UK, 3-6 days elsewhere in the EU, and 6-10 days to "
        "Canada and the US. Express shipping (1-2 days) costs 9.90 EUR; standard shipping is "
        "4.90 EUR and free over 35 EUR for Plus members. Large items (furniture, appliances) "
        "ship by freight with a delivery slot booked by phone, for 29 EUR. The delivery "
        "address can be changed until the order is dispatched; after that, the carrier's "
        "redirect service may apply. Pickup points and lockers are available in most cities. "
        "Marketplace sellers set their own shipping times, shown on the product page. Customs "
        "duties for shipments outside the EU are collected by the carrier on delivery."
    ),
    "account": (
        "Article 5007 - Your account. The email address, phone number and addresses are "
        "changed under Account > Settings; an email change is confirmed from both the old and "
        "the new address. Two-factor authentication by app or SMS is recommended and is "
        "required for sellers. After ten failed sign-ins the account is locked for 30 minutes. "
        "Accounts cannot be merged; order history can be exported from each account as a file. "
        "Deleting an account removes personal data within 30 days, cancels Plus without refund "
        "of the current month, and forfeits unused AcmeShop credit; open orders and returns "
        "must be completed first. A data export (GDPR) is available under Account > Privacy "
        "and is ready within 48 hours."
    ),
    "orders": (
        "Article 6001 - Orders and tracking. An order's status moves from Placed to Paid, "
        "Packed, Dispatched and Delivered; each change is shown on the order page with the "
        "carrier's tracking link once dispatched. Orders with items from several sellers ship "
        "in several parcels. An order can be cancelled free of charge until it is packed. If a "
        "parcel shows delivered but has not arrived, wait until the end of the next business "
        "day, check with neighbours and the building's mailroom, then open a case; AcmeShop "
        "investigates with the carrier within 5 business days. Invoices with VAT are "
        "available on the order page for every order; business customers can add a VAT "
        "number before or after the purchase. Sellers answer order messages within 2 "
        "business days, otherwise the case can be escalated to AcmeShop support."
    ),
    "policy": (
        "Article 0900 - What the copilot does not do. The copilot does not give medical, "
        "legal, tax or investment advice, and does not recommend financial products. For "
        "health questions it points to a doctor or pharmacist and to the product's official "
        "leaflet; for financial questions to an independent adviser. Product claims come only "
        "from the product page and the manufacturer. Buy-now-pay-later and the AcmeShop credit "
        "card are offered by partner banks whose terms apply."
    ),
}

#: The "related questions" section each article ends with (the help centre's own FAQ).
ARTICLE_DETAILS: Final[dict[str, str]] = {
    "password": (
        "Related questions. Q: The reset link says it expired. A: Links expire after 30 "
        "minutes or when a newer one is requested; request one new link and use only that one. "
        "Q: I no longer have access to my email. A: Verify with the phone number on the account "
        "or with the last four digits of the saved card; otherwise support can change the email "
        "after an identity check that takes up to two business days. Q: Can an agent reset it "
        "for me? A: No; agents can only send the standard reset email. Q: I was signed out "
        "everywhere. A: This happens after any password change and after a security alert."
    ),
    "pricing": (
        "Related questions. Q: Can I switch from monthly to annual? A: Yes, at any time; the "
        "unused part of the month is credited. Q: Do prices differ by country? A: Plus costs the "
        "same in the euro area; the UK price is 6.99 GBP per month or 59 GBP per year. Q: Is "
        "there a family plan? A: Plus can be shared with one other adult in the same household "
        "at no extra cost. Q: What does a seller pay on a 100 EUR sale? A: 12 EUR on Basic, 8 EUR "
        "on Professional, plus payment processing of 1.2% charged by the payment partner."
    ),
    "refund": (
        "Related questions. Q: Who pays return shipping? A: AcmeShop for damaged, wrong or "
        "missing items and for Plus members on items sold by AcmeShop; otherwise 3.90 EUR is "
        "deducted from the refund. Q: Can I exchange instead? A: Exchanges are available for "
        "size and colour on items sold by AcmeShop; other items are returned and bought again. "
        "Q: The seller refuses a return. A: Open a case from the order page after 3 days; the "
        "AcmeShop guarantee then decides within 5 business days. Q: Was a partial refund made? "
        "A: The order page lists every refund with its amount and date."
    ),
    "shipping": (
        "Related questions. Q: Why did my order arrive in several parcels? A: Items from "
        "different sellers or warehouses ship separately, at no extra cost. Q: Can I choose a "
        "delivery day? A: Only for freight deliveries and in cities with evening delivery. Q: "
        "Do you ship to PO boxes? A: Standard parcels yes, express and freight no. Q: The "
        "tracking has not moved for three days. A: Carriers sometimes scan only at the hub; "
        "open a case if there is no movement for five business days."
    ),
    "account": (
        "Related questions. Q: Can I have a business and a personal account? A: Yes, with two "
        "different email addresses; business accounts get VAT invoices and approval workflows. "
        "Q: I lost my two-factor device. A: Use a backup code, or verify by SMS to the phone "
        "on file; support can remove two-factor after an identity check. Q: Why was my account "
        "suspended? A: Usually unpaid buy-now-pay-later instalments or a security review; the "
        "email we sent explains which and what to do."
    ),
    "orders": (
        "Related questions. Q: Can I add an item to an order? A: No; place a second order, "
        "shipping is combined when both ship from the same warehouse on the same day. Q: The "
        "order was cancelled by the seller. A: The payment is released within 3 business days. "
        "Q: Where is the invoice for a marketplace item? A: Sellers upload it within 2 business "
        "days; request it from the order page if it is missing. Q: Can someone else receive "
        "the parcel? A: Yes, with the delivery code from the tracking email."
    ),
    "policy": (
        "Related questions. Q: Can the copilot tell me which supplement to take? A: No; it can "
        "show the product facts and the manufacturer's leaflet. Q: Is the AcmeShop card a good "
        "idea? A: The copilot can explain its published terms but not recommend it."
    ),
}

#: Which articles the retriever returns for each intent, best first (general turns: below).
ARTICLES_FOR_INTENT: Final[dict[str, tuple[str, ...]]] = {
    "faq.password": ("password", "account", "policy"),
    "faq.pricing": ("pricing", "shipping", "refund"),
    "faq.refund": ("refund", "orders", "shipping"),
    "faq.shipping": ("shipping", "orders", "pricing"),
    "faq.account": ("account", "password", "pricing"),
    "lowrisk.order-status": ("orders", "shipping"),
    "lowrisk.smalltalk": (),
    "safety.medical": ("policy", "refund"),
    "safety.financial": ("policy", "pricing", "account"),
    "reasoning.compare": ("pricing", "account", "orders"),
    "reasoning.plan": ("pricing", "orders", "account"),
    "tools.invoice": ("orders", "account"),
    "tools.ticket": ("orders", "refund"),
    "tools.shipment": ("shipping", "orders"),
}
#: For general conversations the retriever's picks vary with the question.
GENERAL_ARTICLE_SETS: Final[tuple[tuple[str, ...], ...]] = (
    ("orders", "refund", "shipping", "account"),
    ("refund", "shipping", "orders", "pricing"),
    ("orders", "account", "refund", "password"),
    ("shipping", "orders", "refund", "pricing"),
    ("pricing", "refund", "orders", "account"),
    ("refund", "orders", "shipping", "policy"),
)


# --- Per-customer order context (only on conversations about the customer's own orders) --

PRODUCTS: Final[tuple[str, ...]] = (
    "Kaffa 200 burr grinder",
    "NordicHome linen duvet cover, 200x200",
    "TrailPro 45L backpack",
    "BrewMax espresso machine",
    "Lumo desk lamp, warm white",
    "AeroRun trail shoes, size 42",
    "Harbor rain jacket, green, M",
    "ClickPad wireless keyboard",
    "Stoneware mug set (3)",
    "Flexi laptop stand",
    "SoundCore earbuds",
    "Oak cutting board, large",
)
ORDER_STATES: Final[tuple[str, ...]] = (
    "Placed",
    "Paid",
    "Packed",
    "Dispatched (DHL, tracking JD0146000039)",
    "Dispatched (Colissimo, tracking 6A19288344771)",
    "Delivered",
    "Return started",
)
ORDER_LINE: Final[str] = (
    "- {order}, placed {day} days ago, {n} item(s): {items}; sold by {seller}; "
    "status: {state}; total {total} EUR."
)
SELLERS: Final[tuple[str, ...]] = ("AcmeShop", "AcmeShop", "NordicHome", "TechDeals24", "BrewHub")

# --- The copilot's standing guidelines (sent with every request) -------------------------

GUIDELINES: Final[str] = (
    "Guidelines. Tone: friendly, plain words, no jargon, no exclamation marks in bad news; "
    "address the customer by first name only when the order data shows it. Length: two to "
    "five sentences for a first answer; use a short numbered list only for steps the "
    "customer must follow in order. Facts: quote prices, deadlines and fees only from the "
    "articles and the order data above; when they disagree, the order data wins; when "
    "neither covers the question, say so and offer to connect a human agent. Never guess a "
    "delivery date, a refund amount or a stock level. Marketplace orders: say clearly when a "
    "third-party seller, not AcmeShop, is responsible, and what the AcmeShop guarantee "
    "covers. Privacy: never repeat a full card number, address or phone number; refer to "
    "'the card ending in' and 'your saved address'. Ask for an order number only when none "
    "is in the order data. Actions: use a tool only when the customer asked for that action "
    "or clearly agreed to it; confirm the result in one sentence with the reference the "
    "tool returned; if a tool fails, say so and do not retry it yourself. Escalation: offer "
    "a human agent when the customer asks, repeats a complaint, mentions a legal dispute, a "
    "safety hazard, a chargeback or a vulnerable situation, or when the conversation has "
    "gone four turns without progress. Language: answer in the locale's language unless the "
    "customer writes in another one, then follow the customer. Safety: do not give "
    "medical, legal, tax or investment advice; product safety questions get the "
    "manufacturer's information and, for hazards, the instruction to stop using the "
    "product and the recall page. Sellers (seller centre): answer about fees, payouts, "
    "listings and performance metrics; never disclose another seller's data or a buyer's "
    "contact details. Format: plain text, no markdown headings, links as full URLs on "
    "help.acmeshop.example only."
)
