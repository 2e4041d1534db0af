"""ABCD-format simulator: customer-service chats of an online clothing store.

Six flows (returns, refund status, address change, username recovery, store FAQ, order status). The
agent follows the flow and refers back to what the customer said (their name, the product, the order
id, the new address); every agent act has several wordings of the same meaning. Customers differ in
style (lower case, no full stops, openers) and in how they give details (at once or over several
turns). Action rows (system messages) are written as ABCD has them; prepare drops them.

Output: `abcd_v1.1.json.gz` = {"train": [...], "dev": [...], "test": [...]}, each conversation with
`convo_id`, `scenario`, `original`, `delexed` and `"synthetic": true`.
"""

from __future__ import annotations

import random
from pathlib import Path

from dorl.data.simulate import vocab as V
from dorl.data.simulate.common import Persona, dialogue_rng, dumps, say, split_counts, write_file, write_marker

FILE = "abcd_v1.1.json.gz"

# fmt: off
AGENT = {
    "greet": ["Hi, thanks for reaching out! How can I help you today?", "Hello, how can I help you?",
              "Good morning, what can I do for you today?", "Hi there! What can I help you with?"],
    "greet_1": ["Hi!", "Hello!", "Welcome!"],
    "greet_2": ["How can I help you?", "What can I do for you today?", "How may I help you today?"],
    "ask_name": ["Sure, may I have your full name please?", "I can help with that. Could I get your full name first?",
                 "Happy to help! What is your full name?", "Of course. Can you tell me your name?"],
    "thank_name": ["Thanks, {first}.", "Thank you {first}!", "Great, thanks {first}.", "Got it, thank you {first}."],
    "ask_reason": ["May I ask why you would like to return the {product}?", "What is the reason for the return?",
                   "Could you tell me what is wrong with the {product}?"],
    "ask_ids": ["Could you give me your username, email address and order ID please?",
                "I will need your username, email and the order ID to validate the purchase.",
                "To verify the order, please send me your username, email address and order number."],
    "ask_order_id": ["What is the order ID?", "Could you give me the order ID, please?",
                     "Can I have the order number?"],
    "ask_user_email": ["And your username and email address?", "Thanks. I also need your username and email.",
                       "Now I just need your username and the email on the account."],
    "ask_level": ["What is your membership level, {first}?", "Which membership level do you have?",
                  "Can you tell me your membership level?"],
    "ask_date": ["When did you make the purchase?", "Do you remember when you bought the {product}?",
                 "What was the date of the purchase?"],
    "deny_return": ["I'm sorry {first}, the purchase was more than 90 days ago, so I can't accept the return.",
                    "Unfortunately it has been over 90 days since the purchase, so the {product} can't be returned.",
                    "I'm afraid our policy only allows returns within 90 days, and this order is older than that."],
    "escalate": ["I can pass this to my manager if you'd like. They will call you at {phone}.",
                 "I can ask my manager to review it; they will reach you at {phone}."],
    "ask_method": ["Good news, the {product} can be returned. Would you like to send it by mail, bring it to a "
                   "store, or use a drop-off center?",
                   "You're eligible for a return. How would you like to return it: by mail, in store, or at a "
                   "drop-off center?",
                   "The return is approved. Do you prefer mail, an in-store return or a drop-off center?"],
    "ask_address": ["What address should we send the shipping label to?",
                    "Please give me the full address for the label.", "Where should I send the return label?"],
    "done_mail": ["All set! A prepaid label for your {brand} {product} is on its way to {street}.",
                  "Done. The return label for the {product} will be mailed to {street}.",
                  "I've created the return. You'll receive a label at {street} for the {brand} {product}."],
    "done_store": ["All set! Just bring the {product} and your order ID {order_id} to any of our stores.",
                   "Done. Take the {brand} {product} to a store with order {order_id} and they'll handle it."],
    "done_dropoff": ["Done! Drop the {product} off at any partner center with order ID {order_id}.",
                     "All set. Bring the {brand} {product} to a drop-off center and mention order {order_id}."],
    "ask_anything": ["Is there anything else I can help you with?", "Can I help with anything else today?",
                     "Anything else I can do for you?"],
    "bye": ["Have a great day!", "Thanks for contacting us, take care!", "You're welcome, have a nice day!",
            "Happy to help. Goodbye!"],
    "refund_status": ["Your refund of ${amount} for the {product} is being processed and should reach your {payment} "
                      "within {days} business days.",
                      "The refund of ${amount} is in progress; it goes back to your {payment} in about {days} "
                      "business days.",
                      "I see a refund of ${amount} on order {order_id}. It will land on your {payment} within "
                      "{days} business days."],
    "ask_status": ["What does the shipping status of the order say?", "Has the order shipped yet?",
                   "Can you tell me the current shipping status of the order?"],
    "too_late": ["Since the order has already been delivered, I can't change its address, but I can update "
                 "your account for future orders.",
                 "The order was delivered already, so its address can't be changed anymore."],
    "ask_new_address": ["What is the new address?", "Please give me the new shipping address.",
                        "Sure, what address should the order go to now?"],
    "address_done": ["Done! Order {order_id} will now ship to {street}, {city}.",
                     "All taken care of: the order is going to {street}, {city} now.",
                     "I've updated order {order_id}; it will be delivered to {street}, {city}."],
    "ask_identity": ["To verify your identity, could you give me your zip code and phone number?",
                     "For security, please confirm your phone number and zip code.",
                     "I just need your zip code and phone number to verify it's you."],
    "username": ["Thanks {first}, your username is {username}.", "You're verified. The username is {username}.",
                 "Got it. Your username on file is {username}."],
    "check": ["Let me check that for you.", "Sure, let me look that up.", "One moment while I look into that."],
    "wait": ["One moment please.", "Just a second.", "Bear with me for a moment."],
    "order_status": ["Your order {order_id} is {status} and should arrive within {days} days.",
                     "I see order {order_id} is {status}. It should get to you in about {days} days.",
                     "The order is {status}; expect it within {days} days."],
}
FAQ = {
    "shipping": (["How much does overnight shipping cost?", "What do you charge for express shipping?",
                  "is next day delivery expensive?"],
                 ["Overnight shipping is $24.99 for orders under 5 lbs.",
                  "Next-day delivery costs $24.99 for packages up to 5 lbs.",
                  "Express shipping is a flat $24.99 up to 5 lbs."]),
    "promo": (["How long is a promo code valid?", "When do promo codes expire?",
               "I have a promo code, how long can I use it?"],
              ["Promo codes are valid for 7 days after they are issued.",
               "Every promo code expires 7 days after you receive it.",
               "You can use a promo code for 7 days."]),
    "membership": (["What do I get as a gold member?", "What are the perks of gold membership?",
                    "Is gold membership worth it?"],
                   ["Gold members get free shipping and unlimited returns.",
                    "With gold you get free shipping on every order and no return limit.",
                    "Gold membership includes free shipping and unlimited returns."]),
    "hours": (["When is your customer service open?", "What are your support hours?",
               "Can I call you on weekends?"],
              ["Our agents are available 8am to 8pm, seven days a week.",
               "Support is open every day from 8am until 8pm.",
               "You can reach us daily between 8am and 8pm."]),
}
CUSTOMER = {
    "hello": ["Hi!", "Hello", "Hey there", "Good morning"],
    "return": ["I need to return the {brand} {product} I ordered.", "Hi, I want to return an item.",
               "Can I send back the {product} I bought? It {reason_short}.", "I'd like to return my {product}."],
    "name": ["{name}", "It's {name}.", "Sure, {name}.", "My name is {name}."],
    "reason": ["It {reason_short}.", "Because it {reason_short}.", "It just {reason_short}, unfortunately."],
    "ids_all": ["Username: {username}, email: {email}, order ID: {order_id}",
                "{username}, {email}, {order_id}"],
    "username_email": ["{username} and {email}", "Username is {username}, email {email}"],
    "order_id": ["It's {order_id}.", "{order_id}", "Order ID: {order_id}"],
    "level": ["I'm a {level} member.", "{level}", "It's {level}."],
    "date_ok": ["I bought it in {month}.", "About {weeks} weeks ago.", "On {month} {day}."],
    "date_old": ["Last {month}, I think.", "It was over a year ago.", "Back in {month} of last year."],
    "plead": ["Is there really nothing you can do?", "That's disappointing. Any other option?"],
    "accept_escalate": ["Yes please, thank you.", "Ok, please do that."],
    "method_mail": ["By mail, please.", "Mail is easiest.", "I'll send it by mail."],
    "method_store": ["I'll bring it to a store.", "In store works for me."],
    "method_dropoff": ["A drop-off center would be great.", "Drop-off center please."],
    "address": ["{street}, {city}, {state} {zip}", "Send it to {street}, {city} {zip}."],
    "no_more": ["No, that's all. Thanks!", "Nope, thank you so much.", "That's everything, thanks for your help.",
                "no thanks"],
    "refund": ["I want to check the status of my refund.", "Where is my refund?",
               "Hi, I returned the {product} and haven't seen the refund yet."],
    "how_long": ["How long will it take?", "When will I see the money?"],
    "thanks": ["Great, thanks.", "Perfect, thank you!", "Ok good to know."],
    "address_change": ["I moved and need to change the shipping address on my order.",
                       "Can I update the delivery address for my order?", "I need my order sent to a new address."],
    "status": ["It says {status}.", "{status}", "I think it's {status}."],
    "username_lost": ["I forgot my username.", "I can't remember my username, can you help?",
                      "Hi, I need to recover my username."],
    "zip_phone": ["{zip} and {phone}", "Zip is {zip}, phone {phone}."],
    "where_order": ["My order still hasn't arrived.", "Where is my order?", "Can you check on my order? It's late."],
    "hold": ["Ok, one sec.", "Sure.", "Thanks."],
}
# Acts where a persona's opener ("sure, ", "ok ") reads naturally.
OPENER_ACTS = {"name", "ids_all", "username_email", "order_id", "address", "zip_phone", "status", "level", "reason"}
REASONS = ["doesn't fit", "arrived damaged", "is the wrong color", "is too small", "is too big"]
# fmt: on


class Chat:
    """The rows of one conversation, with the delexed targets ABCD keeps beside them."""

    def __init__(self, rng: random.Random, subflow: str, slots: dict):
        self.rng, self.subflow, self.slots = rng, subflow, slots
        self.persona = Persona.draw(rng)
        self.rows: list[tuple[str, str, str | None, list]] = []

    def agent(self, act: str, **extra) -> None:
        self.rows.append(("agent", say(self.rng, AGENT[act], {**self.slots, **extra}), None, []))

    def customer(self, act: str, **extra) -> None:
        text = say(self.rng, CUSTOMER[act], {**self.slots, **extra})
        self.say_customer(text, opener=act in OPENER_ACTS)

    def say_customer(self, text: str, opener: bool = False) -> None:
        self.rows.append(("customer", self.persona.style(self.rng, text, opener=opener)[0], None, []))

    def action(self, button: str, text: str, values: list) -> None:
        self.rows.append(("action", text, button, values))

    def greet(self) -> None:
        if self.rng.random() < 0.25:
            self.customer("hello")
        if self.rng.random() < 0.4:
            self.agent("greet_1")
            self.agent("greet_2")
        else:
            self.agent("greet")

    def identify(self) -> None:
        s = self.slots
        self.agent("ask_name")
        self.customer("name")
        self.action("pull-up-account", f"Account pulled up for {s['name']}.", [s["name"].lower()])

    def validate(self) -> None:
        s, rng = self.slots, self.rng
        if rng.random() < 0.5:
            self.agent("ask_ids")
            if rng.random() < 0.5:
                self.customer("ids_all")
            else:  # one detail per turn, as many customers do
                for part in rng.sample([s["username"], s["email"], "Order ID: " + s["order_id"]], 3):
                    self.say_customer(part, opener=True)
        else:
            self.agent("ask_order_id")
            self.customer("order_id")
            self.agent("ask_user_email")
            self.customer("username_email")
        self.action("validate-purchase", "Validating purchase ...", [s["username"], s["email"], s["order_id"]])

    def close(self) -> None:
        self.agent("ask_anything")
        self.customer("no_more")
        self.agent("bye")


def flow_return(c: Chat) -> None:
    s, rng = c.slots, c.rng
    c.greet()
    c.customer("return")
    c.identify()
    c.agent("thank_name")
    c.agent("ask_reason")
    c.customer("reason")
    c.validate()
    c.agent("ask_level")
    c.customer("level")
    old = rng.random() < 0.25
    c.agent("ask_date")
    c.customer("date_old" if old else "date_ok")
    if old and s["level"] != "gold":
        c.agent("deny_return")
        if rng.random() < 0.6:
            c.customer("plead")
            c.agent("escalate")
            c.customer("accept_escalate")
            c.action("notify-team", "The manager has been notified.", [])
        c.close()
        return
    c.agent("ask_method")
    method = rng.choice(["mail", "store", "dropoff"])
    c.customer(f"method_{method}")
    if method == "mail":
        c.agent("ask_address")
        c.customer("address")
    c.action("update-order", f"Return set up by {method}.", [method])
    c.agent(f"done_{method}")
    c.close()


def flow_refund(c: Chat) -> None:
    c.greet()
    c.customer("refund")
    c.identify()
    c.validate()
    if c.rng.random() < 0.5:
        c.agent("wait")
    c.agent("refund_status")
    if c.rng.random() < 0.4:
        c.customer("how_long")
        c.agent("refund_status")
    c.customer("thanks")
    c.close()


def flow_address(c: Chat) -> None:
    s = c.slots
    c.greet()
    c.customer("address_change")
    c.identify()
    c.agent("ask_status")
    c.customer("status")
    c.action("shipping-status", f"Shipping status noted: {s['status']}.", [s["status"]])
    if s["status"] == "delivered":
        c.agent("too_late")
        c.customer("thanks")
        c.close()
        return
    c.validate()
    c.agent("ask_new_address")
    c.customer("address")
    c.action("update-order", "Order updated with a new address.", ["change address"])
    c.agent("address_done")
    c.close()


def flow_username(c: Chat) -> None:
    s = c.slots
    c.greet()
    c.customer("username_lost")
    c.identify()
    c.agent("ask_identity")
    c.customer("zip_phone")
    c.action("verify-identity", "Verifying identity ...", [s["zip"], s["phone"]])
    c.agent("username")
    c.close()


def flow_faq(c: Chat) -> None:
    c.greet()
    topic = c.slots["topic"]
    questions, answers = FAQ[topic]
    c.say_customer(c.rng.choice(questions))
    c.agent("check")
    if c.rng.random() < 0.5:
        c.agent("wait")
    c.action("search-faq", "Searching the help pages ...", [])
    c.action("select-faq", f"Help answer about {topic} selected.", [topic])
    c.rows.append(("agent", c.rng.choice(answers), None, []))
    c.customer("thanks")
    c.close()


def flow_status(c: Chat) -> None:
    c.greet()
    c.customer("where_order")
    c.identify()
    c.agent("ask_order_id")
    c.customer("order_id")
    c.action("validate-purchase", "Validating purchase ...", [c.slots["order_id"]])
    c.agent("order_status")
    c.customer("thanks")
    c.close()


FLOWS = {
    ("product_defect", "return"): flow_return,
    ("product_defect", "refund_status"): flow_refund,
    ("shipping_issue", "manage_address"): flow_address,
    ("account_access", "recover_username"): flow_username,
    ("storewide_query", "faq"): flow_faq,
    ("shipping_issue", "status"): flow_status,
}


def draw_slots(rng: random.Random) -> dict:
    first, last = rng.choice(V.FIRST_NAMES), rng.choice(V.LAST_NAMES)
    city, state = rng.choice(V.CITIES)
    username = f"{first[0].lower()}{last.lower()}{rng.randint(100, 999)}"
    return {
        "first": first,
        "name": f"{first} {last}",
        "username": username,
        "email": f"{username}@email.com",
        "phone": f"({rng.randint(200, 989)}) {rng.randint(200, 989)}-{rng.randint(1000, 9999)}",
        "zip": f"{rng.randint(10000, 99999)}",
        "account_id": "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(10)),
        "level": rng.choice(V.MEMBER_LEVELS),
        "order_id": str(rng.randint(1_000_000_000, 9_999_999_999)),
        "brand": rng.choice(V.BRANDS),
        "product": rng.choice(V.PRODUCTS),
        "amount": rng.randint(19, 189),
        "payment": rng.choice(V.PAYMENT),
        "status": rng.choice(V.SHIPPING_STATUS),
        "street": f"{rng.randint(10, 9999)} {rng.choice(V.STREETS)}",
        "city": city,
        "state": state,
        "month": rng.choice(V.MONTHS),
        "day": rng.randint(1, 28),
        "weeks": rng.choice(["two", "three", "four", "six"]),
        "days": rng.choice([3, 5, 7, 10]),
        "reason_short": rng.choice(REASONS),
        "topic": rng.choice(sorted(FAQ)),
    }


def conversation(rng: random.Random, convo_id: int) -> dict:
    (flow, subflow), run = rng.choice(list(FLOWS.items()))
    s = draw_slots(rng)
    chat = Chat(rng, subflow, s)
    run(chat)
    delexed = [
        {
            "speaker": speaker,
            "text": text.lower(),
            "turn_count": k + 1,
            "targets": [
                subflow,
                {"agent": "retrieve_utterance", "action": "take_action"}.get(speaker),
                button,
                values,
                -1,
            ],
            "candidates": [],
        }
        for k, (speaker, text, button, values) in enumerate(chat.rows)
    ]
    scenario = {
        "personal": {
            "account_id": s["account_id"],
            "customer_name": s["name"].lower(),
            "email": s["email"],
            "member_level": s["level"],
            "phone": s["phone"],
            "username": s["username"],
        },
        "order": {
            "city": s["city"],
            "full_address": f"{s['street']}  {s['city']}, {s['state']} {s['zip']}",
            "num_products": "1",
            "order_id": s["order_id"],
            "packaging": "yes",
            "payment_method": s["payment"],
            "products": repr([{"brand": s["brand"], "product_type": s["product"], "amount": s["amount"]}]),
            "shipping_status": s["status"],
            "state": s["state"],
            "street_address": s["street"],
            "zip_code": s["zip"],
        },
        "product": {"names": [f"{s['brand']} {s['product']}"], "amounts": [s["amount"]]},
        "flow": flow,
        "subflow": subflow,
    }
    return {
        "convo_id": convo_id,
        "scenario": scenario,
        "original": [[speaker, text] for speaker, text, _, _ in chat.rows],
        "delexed": delexed,
        "synthetic": True,
    }


def write(n: int, seed: int, out: Path) -> Path:
    counts = split_counts(n)
    data, i = {}, 0
    for split, k in counts.items():
        data[split] = [conversation(dialogue_rng("abcd", seed, j), 100_000 + j) for j in range(i, i + k)]
        i += k
    files = {FILE: write_file(out / FILE, dumps(data))}
    write_marker(out, "abcd", n, seed, files, counts)
    return out
