"""Taskmaster-3-format simulator: a customer buys movie tickets from a booking assistant.

The customer names a date and a theater (sometimes a genre or the number of tickets); the assistant
asks for what is missing, searches (API calls attached to the user utterance before the reply that
uses them, as in TM-3), offers one or two films with their showtimes, confirms the booking in one
sentence built from everything said and buys the tickets. Variations: the assistant mishears the
theater and is corrected, the customer changes the number of tickets, a showing sells out, and the
assistant sometimes speaks twice in a row ("Let me check." then the result).

Layout: `data/data_00.json` .. `data/data_19.json` (dialogs spread over the 20 files, as upstream).
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path

from dorl.data.simulate import common as C
from dorl.data.simulate import vocab as V
from dorl.data.simulate.common import AgentStyle, Persona, Span, combos, fill

N_FILES = 20
ENTITY = {
    "theater": "name.theater",
    "wrong": "name.theater",
    "movie": "name.movie",
    "m1": "name.movie",
    "m2": "name.movie",
    "genre": "name.genre",
    "time": "time.showing",
    "t1": "time.showing",
    "t2": "time.showing",
    "t3": "time.showing",
    "date": "date.showing",
    "num": "num.tickets",
}

# fmt: off
ASSISTANT = {
    "ask_genre": combos(["", "No problem.", "Sure.", "Happy to help.", "Great.", "I can do that."],
                        ["is there a particular type of movie you're looking for?",
                         "what kind of movie would you like to see?", "any genre in mind?",
                         "what are you in the mood for?", "do you have a genre in mind?",
                         "what type of movie do you prefer?"]),
    "check": ["Let me check.", "One moment while I look that up.", "Sure, let me see what's playing.",
              "Checking the listings now.", "Give me a second to look.", "Let me take a look."],
    "misheard": ["Sure. Let me check listings at {wrong}.", "OK, looking at {genre} movies at {wrong}."],
    "sorry": ["Oh, sorry about that. So you're interested in {genre} films at {theater}, right?",
              "My mistake. You want {genre} movies at {theater}, correct?"],
    "one_movie": ["OK. I see one {genre} movie playing at {theater}: {movie}. Showtimes are {t1}, {t2} and {t3}. "
                  "Does any of those work?",
                  "{movie} is the {genre} movie at {theater}, showing at {t1}, {t2} and {t3}. Which time would "
                  "you like?",
                  "There's one {genre} film at {theater}, {movie}, at {t1}, {t2} or {t3}. Any of those good?"],
    "two_movies": ["I found two {genre} movies at {theater}: {m1} and {m2}. Which one would you like?",
                   "At {theater} there's {m1} and {m2}. Do either of those sound good?",
                   "Two {genre} movies are playing at {theater}: {m1} and {m2}. Which would you prefer?"],
    "showtimes": ["{movie} is showing at {t1}, {t2} and {t3}. Which time works for you?",
                  "Showtimes for {movie} are {t1}, {t2} and {t3}. Which one?",
                  "I have {movie} at {t1}, {t2} or {t3}. What time would you like?"],
    "ask_num": combos(["", "Great.", "Sure.", "OK,", "Perfect.", "Got it."],
                      ["and how many tickets?", "how many tickets do you need?", "how many people are going?",
                       "how many tickets should I get?", "for how many people?"]),
    "confirm": ["All right. Let me confirm that you'd like {num} tickets for {movie} at {theater} {date} at {time}. "
                "Is that all correct?",
                "So that's {num} tickets for {movie}, {date} at {time}, at {theater}. Is that right?",
                "Just to confirm: {num} tickets to see {movie} at {theater}, {date} at {time}. Correct?"],
    "ask_buy": combos(["", "Great.", "Perfect.", "Thanks."],
                      ["is it OK to go ahead and purchase these tickets?", "shall I go ahead and buy them?",
                       "would you like me to complete the purchase?", "should I book them now?",
                       "can I go ahead with the purchase?"]),
    "sold_out": ["I'm sorry, the {time} showing just sold out. Would {t_alt} work instead?",
                 "Unfortunately {time} is sold out now. Is {t_alt} OK?"],
    "bought": combos(["OK. Your tickets are purchased and the details have been sent to your email.",
                      "Done! The tickets are booked and a confirmation is in your inbox.",
                      "Your tickets are confirmed; you'll find them in your email.",
                      "All set, the purchase went through.", "The tickets are yours; check your email."],
                     ["can I help with anything else?", "anything else?", "is there anything else I can do?",
                      "do you need anything else?", ""]),
    "bye": combos(["", "OK.", "You're welcome.", "My pleasure.", "Great."],
                  ["enjoy your movie!", "have a great time at the movies!", "enjoy the show!", "have fun!",
                   "enjoy the film!", "bye for now!"]),
}
USER = {
    "open": ["Hi, I'd like to buy movie tickets for {date} at {theater}.",
             "hello, can I get tickets for a movie {date}? We want to go to {theater}.",
             "I want to see a movie at {theater} {date}.", "Hey, I'm looking to catch a film {date} at {theater}."],
    "open_genre": ["Hi, I'd like to see a {genre} movie {date} at {theater}.",
                   "Can you find me a {genre} movie at {theater} for {date}?"],
    "genre": ["I'm in the mood for {genre}.", "Something {genre}, please.", "{genre}", "Maybe a {genre} movie?"],
    "correct": ["No, I said {theater}.", "Actually, I wanted {theater}.", "Not that one, {theater} please."],
    "yes": ["Yes.", "Yeah, that's right.", "Yes please.", "Correct.", "yep"],
    "buy": ["Yes, go ahead.", "Yes please.", "Sure, go ahead.", "yep", "Please do."],
    "pick_movie": ["{movie} sounds good.", "Let's do {movie}.", "I'll go with {movie}."],
    "pick_time": ["{time} works for me.", "The {time} one, please.", "Let's do {time}.", "{time} is perfect."],
    "num": ["{num} tickets, please.", "We need {num}.", "{num}, please.", "{num} tickets."],
    "change_num": ["Actually, can you make it {num}?", "Oh wait, we need {num} tickets instead."],
    "ok_alt": ["Sure, {time} is fine.", "OK, {time} then.", "That works."],
    "no_more": ["No, that's all. Thanks!", "Nope, thank you.", "No thanks, that's everything."],
}
# fmt: on


NO_ACK = {"bye", "sorry", "bought"}


class Dialog:
    def __init__(self, rng: random.Random):
        self.rng, self.persona = rng, Persona.draw(rng)
        self.style = AgentStyle.draw(rng)
        self.utterances: list[dict] = []

    def _add(self, speaker: str, text: str, spans: list[Span]) -> None:
        u = {"index": len(self.utterances), "speaker": speaker, "text": text}
        segs = [
            {"start_index": a, "end_index": b, "text": text[a:b], "annotations": [{"name": ENTITY[s]}]}
            for s, a, b, _ in spans
            if s in ENTITY
        ]
        if segs:  # absent, not empty, when there are none (as upstream)
            u["segments"] = segs
        self.utterances.append(u)

    def user(self, act: str, values: dict, opener: bool = False) -> None:
        text, spans = fill(C.articles(self.rng.choice(USER[act]), values), values)
        text, spans = self.persona.style(self.rng, text, spans, opener=opener)
        self._add("user", text, spans)

    def assistant(self, act: str, values: dict) -> None:
        text, spans = fill(C.articles(self.style.template(self.rng.choice(ASSISTANT[act])), values), values)
        text = text[0].upper() + text[1:]
        text, spans = self.style.surface(self.rng, text, spans, ack=act not in NO_ACK)
        self._add("assistant", text, spans)

    def api(self, name: str, args: dict, response: dict) -> None:
        """An API call, attached to the latest user utterance (TM-3 puts it there)."""
        last = next(u for u in reversed(self.utterances) if u["speaker"] == "user")
        last.setdefault("apis", []).append({"name": name, "index": last["index"], "args": args, "response": response})


def dialog(rng: random.Random) -> dict:
    d = Dialog(rng)
    genre = rng.choice(sorted(V.MOVIES))
    movies = rng.sample(V.MOVIES[genre], 2)
    theater, wrong = rng.sample(V.THEATERS, 2)
    times = sorted(rng.sample(V.SHOWTIMES, 4), key=V.SHOWTIMES.index)
    n = rng.randint(1, 6)
    s = {"date": rng.choice(V.SHOW_DATES), "theater": theater, "wrong": wrong, "genre": genre}
    s |= {"m1": movies[0], "m2": movies[1], "movie": movies[0], "t1": times[0], "t2": times[1], "t3": times[2]}
    s |= {"num": V.NUMBER_WORDS[n]}
    variants = []
    if rng.random() < 0.5:
        d.user("open_genre", s)
    else:
        d.user("open", s)
        d.assistant("ask_genre", s)
        d.user("genre", s, opener=True)
    if rng.random() < 0.25:
        variants.append("theater name error")
        d.assistant("misheard", s)
        d.user("correct", s)
        d.assistant("sorry", s)
        d.user("yes", s)
    two = rng.random() < 0.4
    found = {f"name.movie_{k + 1}": m for k, m in enumerate(movies if two else movies[:1])}
    d.api("find_movies", {"name.genre": genre, "name.theater": theater}, found)
    if rng.random() < 0.3:
        d.assistant("check", s)  # the assistant speaks twice in a row
    showtimes = {f"time.showing_{k + 1}": t for k, t in enumerate(times[:3])}
    if two:
        d.assistant("two_movies", s)
        s["movie"] = rng.choice(movies)
        d.user("pick_movie", s, opener=True)
        d.api(
            "find_showtimes", {"name.theater": theater, "date.showing": s["date"], "name.movie": s["movie"]}, showtimes
        )
        d.assistant("showtimes", s)
    else:
        d.api(
            "find_showtimes", {"name.theater": theater, "date.showing": s["date"], "name.movie": s["movie"]}, showtimes
        )
        d.assistant("one_movie", s)
    s["time"] = rng.choice(times[:3])
    d.user("pick_time", s, opener=True)
    d.assistant("ask_num", s)
    d.user("num", s, opener=True)
    d.assistant("confirm", s)
    if rng.random() < 0.2:
        variants.append("changed number of tickets")
        s["num"] = V.NUMBER_WORDS[n % 6 + 1]
        d.user("change_num", s)
        d.assistant("confirm", s)
    d.user("yes", s)
    d.assistant("ask_buy", s)
    d.user("buy", s)
    booking = {"name.movie": s["movie"], "name.theater": theater, "time.showing": s["time"], "num.tickets": s["num"]}
    if rng.random() < 0.15:
        variants.append("sold out")
        d.api("book_tickets", {**booking, "date.showing": s["date"]}, {"api.response": "failure"})
        s["t_alt"] = times[3]
        d.assistant("sold_out", s)
        s["time"] = times[3]
        d.user("ok_alt", s)
        booking["time.showing"] = s["time"]
    d.api("book_tickets", {**booking, "date.showing": s["date"]}, {"api.response": "success"})
    d.assistant("bought", s)
    d.user("no_more", s)
    d.assistant("bye", s)
    scenario = "dorl simulated booking" + (" with " + " and ".join(variants) if variants else "")
    return {
        "conversation_id": f"dlg-{uuid.UUID(int=rng.getrandbits(128), version=4)}",
        "vertical": "Movie Tickets",
        "scenario": scenario,
        "instructions": "SIMULATED by dorl (not written by a person): a customer buys movie tickets from a "
        f"booking assistant. Scenario: {scenario}.",
        "utterances": d.utterances,
        "synthetic": True,
    }


def write(n: int, seed: int, out: Path) -> Path:
    files = {}
    for k, part in enumerate(C.chunks(list(range(n)), N_FILES)):
        rel = f"data/data_{k:02d}.json"
        files[rel] = C.write_json(out / rel, (dialog(C.dialogue_rng("taskmaster3", seed, i)) for i in part))
    # No split here: like the real release; prepare applies the reference's seeded 80/10/10 split.
    C.write_marker(out, "taskmaster3", n, seed, files, {"all": n})
    return out
