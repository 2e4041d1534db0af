"""MultiWOZ-2.2-format simulator: a town-information desk booking restaurants, hotels, trains and
pointing to attractions, one or two domains per dialogue.

The user states constraints in varying order and amount; the system asks for what is missing,
recommends a venue built from those constraints, answers requests (address, phone, postcode) and
books with the details the user gave. USER turns carry frames for all 8 services with the dialogue
state (active intent, requested slots, slot values as lists) and span annotations; dialog acts go to
`dialog_acts.json` as upstream. Layout: `{train,dev,test}/dialogues_NNN.json` (17 / 2 / 2 files, as
upstream) and `dialog_acts.json`.
"""

from __future__ import annotations

import random
from pathlib import Path

from dorl.data.simulate import common as C
from dorl.data.simulate import vocab as V
from dorl.data.simulate.common import AgentStyle, Persona, Span, combos, fill

SERVICES = ["restaurant", "taxi", "train", "bus", "police", "hotel", "attraction", "hospital"]
FILES = {"train": 17, "dev": 2, "test": 2}
# Slots whose values are annotated as spans (the non-categorical ones in MultiWOZ 2.2's schema).
SPAN_SLOTS = {"food", "name", "booktime", "leaveat", "arriveby", "departure", "destination"}

# fmt: off
# Leads of a question: some say how many places match so far (real MultiWOZ agents often do).
ASK = ["", "Sure.", "Okay.", "I can help with that.", "Certainly.", "I'd be happy to help.",
       "I have {choice} options.", "There are {choice} that match.", "I found {choice} places.",
       "We have {choice} to choose from."]
SYSTEM = {
    "req_area": combos(ASK, ["what part of town do you have in mind?", "which area would you like?",
                             "do you have an area of town in mind?", "is there a part of town you prefer?",
                             "should it be in the centre, or another area?"]),
    "req_pricerange": combos(ASK, ["do you have a price range in mind?", "what price range are you looking for?",
                                   "would you like something cheap, moderate or expensive?",
                                   "how much would you like to spend?", "is price a concern?"]),
    "req_food": combos(ASK, ["what type of food would you like?", "is there a cuisine you prefer?",
                             "what kind of food are you in the mood for?", "any particular cuisine?",
                             "what food are you interested in?"]),
    "req_stars": combos(ASK, ["how many stars would you like?", "do you have a star rating in mind?",
                              "what star rating should it have?"]),
    "req_day": combos(ASK, ["what day will you be travelling?", "which day would you like to travel?",
                            "on what day do you need the train?", "what day are you looking at?"]),
    "req_departure": combos(ASK, ["where will you be departing from?", "where are you leaving from?",
                                  "what is your departure station?", "where will you be travelling from?"]),
    "req_leaveat": combos(ASK, ["what time would you like to leave?", "when would you like to depart?",
                                "is there a time you need to leave after?", "what time works for departure?"]),
    "req_bookpeople": combos(ASK, ["for how many people?", "how many people will be in your party?",
                                   "how many guests should I book for?", "how many will be joining?"]),
    "req_bookday": combos(ASK, ["what day would you like the booking for?", "which day should I book?",
                                "for what day?", "what day are you planning to come?"]),
    "req_booktime": combos(ASK, ["what time would you like the reservation?", "at what time?",
                                 "what time should the table be for?", "when would you like to dine?"]),
    "req_bookstay": combos(ASK, ["how many nights will you be staying?", "for how many nights?",
                                 "how long is your stay?", "how many nights do you need?"]),
    "rec_restaurant": ["{name} serves {food} food in the {area} and is in the {pricerange} price range. "
                       "Would you like a table?",
                       "I found {choice} places. {name} is a {pricerange} {food} restaurant in the {area}. "
                       "Shall I book it?",
                       "How about {name}? It's a {food} place in the {area} with {pricerange} prices."],
    "rec_hotel": ["{name} is a {stars} star {type} in the {area} with {pricerange} prices. Shall I book a room?",
                  "I have {choice} options. {name} is a {pricerange} {type} in the {area}, rated {stars} stars.",
                  "I'd recommend {name}, a {stars} star {type} in the {area}. Would you like to book it?"],
    "rec_train": ["{trainid} leaves {departure} at {leave} and arrives in {destination} at {arrive}. "
                  "Would you like me to book it?",
                  "There is a train, {trainid}, departing at {leave} and arriving at {arrive}. Shall I book seats?",
                  "I have {trainid} at {leave}, arriving in {destination} by {arrive}. Does that work?"],
    "rec_attraction": ["{name} is a {type} in the {area}. Entrance is {fee}.",
                       "You could try {name}, a {type} in the {area}; entrance is {fee}.",
                       "There's {name} in the {area}. It's a {type} and entrance is {fee}."],
    "info_restaurant": ["{name} is at {address} and the phone number is {phone}.",
                        "The address is {address}, phone {phone}.",
                        "Sure, you can find them at {address}. Their number is {phone}."],
    "info_hotel": ["{name} is at {address}, postcode {postcode}.", "The address is {address}, {postcode}."],
    "info_attraction": ["The postcode is {postcode} and the phone number is {phone}.",
                        "Their phone number is {phone} and the postcode is {postcode}."],
    "book_restaurant": ["Booking was successful for {bookpeople} people on {bookday} at {booktime}. "
                        "Your reference number is {ref}.",
                        "You're all set: a table for {bookpeople} at {booktime} on {bookday}. Reference: {ref}.",
                        "Done! The table is held for 15 minutes. Reference number is {ref}."],
    "book_hotel": ["I booked {bookstay} nights from {bookday} for {bookpeople} people. Your reference is {ref}.",
                   "Your room is booked for {bookstay} nights starting {bookday}. Reference number: {ref}.",
                   "Booking was successful. The reference number is {ref}."],
    "book_train": ["Booked! The total fee is {fee} GBP, payable at the station. Reference number: {ref}.",
                   "I've booked {bookpeople} seats. It costs {fee} GBP in total; your reference is {ref}.",
                   "Your seats are reserved, reference {ref}. The fare is {fee} GBP."],
    "reqmore": ["Is there anything else I can help you with?", "Can I help you with anything else?",
                "Anything else I can do for you today?", "Is there anything more I can do?",
                "Will you need anything else?", "Can I help with something else?", "Do you need anything else?"],
    "bye": combos(["", "You're welcome.", "Thank you for using our service.", "It was my pleasure.",
                   "Glad I could help.", "Thanks for calling.", "Happy to help."],
                  ["have a great day!", "goodbye!", "have a lovely day, goodbye!", "enjoy your stay!",
                   "enjoy your trip!", "take care!", "have a nice time in Cambridge!"]),
}
USER = {
    "restaurant": ["I'm looking for a{pricerange_}{food_} restaurant{area_}.", "I need a{pricerange_}{food_} place "
                   "to eat{area_}.", "Can you help me find a{pricerange_}{food_} restaurant{area_}?"],
    "hotel": ["I need a place to stay{area_}. It should be a{pricerange_} {type}{stars_}.",
              "I'm looking for a{pricerange_} {type}{area_}{stars_}.",
              "Can you find me a{pricerange_} {type}{area_}{stars_}?"],
    "train": ["I need a train{departure_} to {destination}{day_}.",
              "I'm looking for a train{departure_} going to {destination}{day_}.",
              "Can you find me a train{departure_} to {destination}{day_}?"],
    "attraction": ["Is there a {type} in the {area}?", "I'd like to visit a {type} in the {area}.",
                   "Can you recommend a {type} in the {area} of town?"],
    "also": ["Thanks. ", "Great. ", "", "Perfect, thank you. "],
    "area": ["In the {area}, please.", "The {area} would be best.", "{area}"],
    "pricerange": ["Something {pricerange}.", "{pricerange} please.", "I'd like it to be {pricerange}."],
    "food": ["I'd like {food} food.", "{food}, please.", "Let's go with {food}."],
    "stars": ["{stars} stars.", "At least {stars} stars, please."],
    "day": ["On {day}.", "I'll be travelling on {day}.", "{day}"],
    "departure": ["From {departure}.", "I'm leaving from {departure}."],
    "leaveat": ["I want to leave after {leaveat}.", "After {leaveat}, please."],
    "dontcare": ["I don't mind.", "Any is fine.", "It doesn't matter."],
    "book_restaurant": ["Yes, please book a table for {bookpeople} people on {bookday} at {booktime}.",
                        "Please reserve it for {bookpeople} at {booktime} on {bookday}."],
    "book_hotel": ["Book it for {bookpeople} people for {bookstay} nights starting {bookday}.",
                   "Yes please, {bookpeople} people, {bookstay} nights from {bookday}."],
    "book_train": ["Yes, book it for {bookpeople} people please.", "Please book {bookpeople} tickets."],
    # the same requests without the party size: the system asks for it
    "book_restaurant_np": ["Yes, please book a table on {bookday} at {booktime}.",
                           "Please reserve it for {booktime} on {bookday}."],
    "book_hotel_np": ["Book it for {bookstay} nights starting {bookday}.",
                      "Yes please, {bookstay} nights from {bookday}."],
    "book_train_np": ["Yes, please book it.", "That works, book it please."],
    "bookpeople": ["{bookpeople} people.", "There will be {bookpeople} of us."],
    "ask_restaurant": ["Can I get the address and phone number?", "What is their address and phone number?"],
    "ask_hotel": ["What is the address?", "Can you give me the address and postcode?"],
    "ask_attraction": ["What's the postcode and phone number?", "Could I get the phone number and postcode?"],
    "done": ["That's all I need, thanks.", "No, that's everything. Thank you!", "Nope, thanks for your help."],
}
# fmt: on


NO_ACK = {"bye"}


class Dialog:
    """Turns, dialogue state and acts of one MultiWOZ dialogue."""

    def __init__(self, rng: random.Random):
        self.rng, self.persona = rng, Persona.draw(rng)
        self.style = AgentStyle.draw(rng)
        self.turns: list[dict] = []
        self.acts: dict[str, dict] = {}
        self.state = {s: {"active_intent": "NONE", "requested_slots": [], "slot_values": {}} for s in SERVICES}
        self.services: list[str] = []

    def user(self, template: str, values: dict, service: str, intent: str, requested: list[str] = ()) -> None:
        text, spans = fill(C.articles(template, values), values)
        text, spans = self.persona.style(self.rng, text, spans, opener=True)
        st = self.state[service]
        st["active_intent"], st["requested_slots"] = intent, [f"{service}-{r}" for r in requested]
        for slot, _, _, value in spans:
            st["slot_values"][f"{service}-{slot}"] = [value.lower()]
        for slot, value in values.items():
            if value == "dontcare":
                st["slot_values"][f"{service}-{slot}"] = ["dontcare"]
        frames = []
        for s in [*self.services, *(s for s in SERVICES if s not in self.services)]:
            slots = [_span(sl, a, b, v) for sl, a, b, v in spans if s == service and sl in SPAN_SLOTS]
            frames.append({"actions": [], "service": s, "slots": slots, "state": _copy(self.state[s])})
        kind = "Request" if requested else "Inform"
        self._turn("USER", text, frames, service, kind, spans + [(r, -1, -1, "?") for r in requested])

    def system(self, act: str, values: dict, service: str, kind: str, requested: str | None = None) -> None:
        text, spans = fill(C.articles(self.style.template(self.rng.choice(SYSTEM[act])), values), values)
        text = text[0].upper() + text[1:]  # a sentence may start with a venue name
        text, spans = self.style.surface(self.rng, text, spans, ack=act not in NO_ACK)
        if requested:
            spans.append((requested, -1, -1, "?"))
        slots = [_span(sl, a, b, v) for sl, a, b, v in spans if sl in SPAN_SLOTS and a >= 0]
        frames = [{"actions": [], "service": service, "slots": slots}] if slots else []
        self._turn("SYSTEM", text, frames, service, kind, spans)

    def _turn(self, speaker: str, text: str, frames: list, service: str, kind: str, spans: list[Span]) -> None:
        turn_id = str(len(self.turns))
        self.turns.append({"frames": frames, "speaker": speaker, "turn_id": turn_id, "utterance": text})
        domain = "general" if service == "general" else service.capitalize()
        act = f"{domain}-{kind}"
        pairs = [[s, v] for s, _, _, v in spans] or [["none", "none"]]
        self.acts[turn_id] = {
            "dialog_act": {act: pairs},
            "span_info": [[act, s, v, a, b] for s, a, b, v in spans if a >= 0],
        }


def _span(slot: str, start: int, end: int, value: str) -> dict:
    return {"exclusive_end": end, "slot": slot, "start": start, "value": value}


def _copy(st: dict) -> dict:
    return {
        "active_intent": st["active_intent"],
        "requested_slots": list(st["requested_slots"]),
        "slot_values": {k: list(v) for k, v in sorted(st["slot_values"].items())},
    }


def venue(rng: random.Random, service: str) -> dict:
    v = {
        "area": rng.choice(V.AREAS),
        "pricerange": rng.choice(V.PRICES),
        "phone": f"01223 {rng.randint(200000, 899999)}",
        "postcode": f"cb{rng.randint(1, 5)} {rng.randint(1, 9)}{rng.choice('abdefghjlnpqrstuwxyz')}"
        f"{rng.choice('abdefghjlnpqrstuwxyz')}",
        "address": f"{rng.randint(1, 120)} {rng.choice(V.STREET_NAMES)}",
        "choice": rng.choice(["two", "three", "several", "4", "5"]),
        "ref": "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(8)),
        "bookpeople": str(rng.randint(1, 8)),
        "bookday": rng.choice(V.DAYS),
    }
    if service == "restaurant":
        v |= {"name": rng.choice(V.RESTAURANTS), "food": rng.choice(V.FOODS), "booktime": _clock(rng, 11, 21)}
    elif service == "hotel":
        v |= {"name": rng.choice(V.HOTELS), "type": rng.choice(V.HOTEL_TYPES), "stars": str(rng.randint(2, 5))}
        v["bookstay"] = str(rng.randint(1, 5))
    elif service == "train":
        dep, dest = rng.sample(V.STATIONS, 2)
        after = rng.randint(5 * 4, 20 * 4) * 15  # minutes since midnight, on the quarter hour
        leave = after + rng.choice([4, 11, 17, 24, 39, 52])
        arrive = leave + rng.randint(2, 12) * 13
        v |= {"departure": dep, "destination": dest, "day": rng.choice(V.DAYS), "leaveat": _hhmm(after)}
        v |= {"leave": _hhmm(leave), "arrive": _hhmm(arrive)}
        v |= {"trainid": f"TR{rng.randint(1000, 9999)}", "fee": f"{rng.randint(4, 40)}.{rng.choice(['10', '60'])}"}
    else:
        name, kind = rng.choice(V.ATTRACTIONS)
        v |= {"name": name, "type": kind, "fee": rng.choice(["free", "5 pounds", "3.50 pounds"])}
    return v


def _clock(rng: random.Random, lo: int, hi: int) -> str:
    return f"{rng.randint(lo, min(hi, 23)):02d}:{rng.choice(['00', '15', '30', '45'])}"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60 % 24:02d}:{minutes % 60:02d}"


def domain(d: Dialog, service: str, first: bool) -> None:
    """One domain's exchange: constraints, missing-slot questions, a recommendation, requests, a booking."""
    rng, v = d.rng, venue(d.rng, service)
    d.services.append(service)
    prefix = "" if first else rng.choice(USER["also"])
    find = f"find_{service}"
    keys = {
        "restaurant": ["food", "area", "pricerange"],
        "hotel": ["type", "area", "pricerange", "stars"],
        "train": ["destination", "departure", "day"],
        "attraction": ["type", "area"],
    }[service]
    always = {"hotel": {"type"}, "train": {"destination"}, "attraction": {"type", "area"}}.get(service, set())
    said = {k: v[k] for k in keys if k in always or rng.random() < 0.55}
    tpl = rng.choice(USER[service])
    for k in keys:  # optional pieces of the request sentence
        piece = {"area": " in the {area}", "stars": " with {stars} stars", "day": " on {day}"}.get(k, " {" + k + "}")
        piece = " from {departure}" if k == "departure" else piece
        tpl = tpl.replace("{" + k + "_}", piece if k in said else "")
    d.user(prefix + tpl, said, service, find)
    missing = [k for k in keys if k not in said and k != "stars"]
    if service == "train":  # a train search needs all of them, and a time
        asked = [*missing, "leaveat"]
    else:
        asked = missing[: rng.randint(0, len(missing))]
    for slot in asked:
        d.system(f"req_{slot}", v, service, "Request", requested=slot)
        if service != "train" and rng.random() < 0.2:
            d.user(rng.choice(USER["dontcare"]), {slot: "dontcare"}, service, find)
        else:
            d.user(rng.choice(USER[slot]), {slot: v[slot]}, service, find)
    d.system(f"rec_{service}", v, service, "Recommend")
    if service == "attraction" or (service != "train" and rng.random() < 0.35):
        asked = {"restaurant": ["address", "phone"], "hotel": ["address", "postcode"]}.get(
            service, ["postcode", "phone"]
        )
        d.user(rng.choice(USER[f"ask_{service}"]), {}, service, find, requested=asked)
        d.system(f"info_{service}", v, service, "Inform")
        if service == "attraction":
            return
    book = f"book_{service}"
    booking = {k: v[k] for k in ("bookpeople", "bookday", "booktime", "bookstay") if k in v}
    if rng.random() < 0.3:  # the party size only when asked
        d.user(rng.choice(USER[f"{book}_np"]), {k: x for k, x in booking.items() if k != "bookpeople"}, service, book)
        d.system("req_bookpeople", v, service, "Request", requested="bookpeople")
        d.user(rng.choice(USER["bookpeople"]), {"bookpeople": v["bookpeople"]}, service, book)
    else:
        d.user(rng.choice(USER[book]), booking, service, book)
    d.system(book, v, service, "Book")


def dialogue(rng: random.Random, i: int) -> dict:
    d = Dialog(rng)
    n_domains = 1 if rng.random() < 0.55 else 2
    for k, service in enumerate(rng.sample(["restaurant", "hotel", "train", "attraction"], n_domains)):
        domain(d, service, first=k == 0)
    if rng.random() < 0.5:  # the system's last turn also offers more help
        d.turns[-1]["utterance"] += " " + d.style.template(rng.choice(SYSTEM["reqmore"]))
    d.user(rng.choice(USER["done"]), {}, d.services[-1], f"find_{d.services[-1]}")
    d.system("bye", {}, "general", "bye")
    prefix = "SIMS" if n_domains == 1 else "SIMM"
    return {"dialogue_id": f"{prefix}{i:05d}.json", "services": d.services, "turns": d.turns, "synthetic": True}, d.acts


def write(n: int, seed: int, out: Path) -> Path:
    counts = C.split_counts(n)
    files, acts, start = {}, {}, 0

    def made(indices: list[int]):
        for j in indices:  # made while written; their acts are kept for dialog_acts.json
            dlg, dlg_acts = dialogue(C.dialogue_rng("multiwoz22", seed, j), j)
            acts[dlg["dialogue_id"]] = dlg_acts
            yield dlg

    for split, k in counts.items():
        for f, part in enumerate(C.chunks(list(range(start, start + k)), FILES[split]), start=1):
            rel = f"{split}/dialogues_{f:03d}.json"
            files[rel] = C.write_json(out / rel, made(part))
        start += k
    files["dialog_acts.json"] = C.write_json(out / "dialog_acts.json", acts)
    C.write_marker(out, "multiwoz22", n, seed, files, counts)
    return out
