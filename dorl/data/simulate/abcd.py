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
from dorl.data.simulate.abcd_phrases import AGENT, CUSTOMER, FAQ, NO_ACK, OPENER_ACTS, REASONS
from dorl.data.simulate.common import (
    AgentStyle,
    Persona,
    articles,
    dialogue_rng,
    fill,
    say,
    split_counts,
    write_json,
    write_marker,
)

FILE = "abcd_v1.1.json.gz"


class Chat:
    """The rows of one conversation, with the delexed targets ABCD keeps beside them."""

    def __init__(self, rng: random.Random, subflow: str, slots: dict):
        self.rng, self.subflow, self.slots = rng, subflow, slots
        self.persona = Persona.draw(rng)
        self.style = AgentStyle.draw(rng, lower_rate=0.3)  # ABCD's agents often type in lower case
        self.vocative = rng.choice([0.0, 0.1, 0.25])  # how often it addresses the customer by name
        self.named = False  # whether the customer has said their name
        self.rows: list[tuple[str, str, str | None, list]] = []

    def agent(self, act: str, **extra) -> None:
        # the customer's name only once they have said it
        wordings = [t for t in AGENT[act] if self.named or "{first}" not in t] or AGENT[act]
        self.say_agent(self.rng.choice(wordings), {**self.slots, **extra}, ack=act not in NO_ACK)

    def say_agent(self, template: str, values: dict, ack: bool = True) -> None:
        """One wording, in this agent's words and style (some agents address the customer by name)."""
        template = self.style.template(template)
        named = self.named and "{first}" not in template
        if ack and named and template[-1:] in ".?!" and self.rng.random() < self.vocative:
            template = template[:-1] + ", {first}" + template[-1]
        text = fill(articles(template, values), values)[0]
        self.rows.append(("agent", self.style.surface(self.rng, text, ack=ack)[0], None, []))

    def customer(self, act: str, **extra) -> str:
        """Say one wording of `act`; returns the template, so a flow can tell what was said."""
        template = self.rng.choice(CUSTOMER[act])
        self.say_customer(say(self.rng, [template], {**self.slots, **extra}), opener=act in OPENER_ACTS)
        return template

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
        self.named = True
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
    opening = c.customer("return")
    c.identify()
    c.agent("thank_name")
    if "{reason_short}" not in opening:  # ask only if the customer has not said why
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
    c.say_agent(c.rng.choice(answers), c.slots)
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
    for split, k in counts.items():  # generators: each conversation is made while it is written
        data[split] = (conversation(dialogue_rng("abcd", seed, j), 100_000 + j) for j in range(i, i + k))
        i += k
    files = {FILE: write_json(out / FILE, data)}
    write_marker(out, "abcd", n, seed, files, counts)
    return out
