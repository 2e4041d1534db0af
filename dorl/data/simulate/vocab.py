"""Slot values for the simulators: people, places, products, venues, films. All invented for dorl
(the station names are ordinary English towns)."""

from __future__ import annotations

# fmt: off
FIRST_NAMES = [
    "Amara", "Ben", "Carla", "Dev", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonah", "Kemi", "Liam",
    "Maya", "Nikhil", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wes", "Yuki", "Zora",
    "Aiden", "Bianca", "Chen", "Dara", "Emil", "Fiona", "Gabe", "Hana", "Ivan", "Jade", "Kofi", "Lena",
]
LAST_NAMES = [
    "Abbott", "Barros", "Castillo", "Dunn", "Ekwueme", "Fischer", "Garner", "Hale", "Ito", "Jensen", "Kowalski",
    "Lindqvist", "Moreau", "Nakamura", "Okafor", "Petrov", "Quist", "Rahman", "Silva", "Tanaka", "Underwood",
    "Vance", "Whitlock", "Xu", "Yilmaz", "Zeller", "Brennan", "Costa", "Delgado", "Farrow",
]

# --- online clothing store (ABCD format)
BRANDS = ["northpeak", "ember & oak", "tidewell", "lumen", "harbor lane", "copperfield", "velia", "stonecrest",
          "alder & finch", "brightmoor", "kestrel", "saltmarsh"]
PRODUCTS = ["jeans", "boots", "jacket", "shirt", "hoodie", "sneakers", "scarf", "dress", "sweater", "hat", "coat",
            "skirt", "sandals", "cardigan", "backpack", "belt"]
CITIES = [
    ("riverton", "or"), ("lakeside", "mi"), ("brookfield", "wi"), ("fairhaven", "ma"), ("glenwood", "co"),
    ("maple springs", "tx"), ("westbury", "ny"), ("ashford", "ca"), ("pinecrest", "fl"), ("millbrook", "pa"),
]
STREETS = ["oak st", "elm ave", "birch rd", "harbor blvd", "mill lane", "cedar ct", "park ave", "sunset dr",
           "willow way", "lake view rd", "spruce st", "chestnut ave"]
MEMBER_LEVELS = ["bronze", "silver", "gold", "guest"]
PAYMENT = ["credit card", "debit card", "paypal", "gift card"]
SHIPPING_STATUS = ["in transit", "order received", "out for delivery", "delivered"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October"]

# --- town information and booking (MultiWOZ format)
AREAS = ["centre", "north", "south", "east", "west"]
PRICES = ["cheap", "moderate", "expensive"]
FOODS = ["italian", "chinese", "indian", "british", "thai", "french", "mexican", "lebanese", "japanese", "korean"]
RESTAURANTS = [
    "the saffron lantern", "blue heron grill", "la piccola stella", "golden wok", "the green fig", "maison rouge",
    "el sol cantina", "cedar & salt", "sakura garden", "the curry leaf", "seoul kitchen", "the old granary",
]
HOTELS = [
    "the willow inn", "riverside lodge", "kingsgate hotel", "the amber house", "parkview guesthouse",
    "the lantern rooms", "holloway b&b", "the meadow hotel", "st clement's house", "the orchard lodge",
]
HOTEL_TYPES = ["hotel", "guesthouse"]
ATTRACTIONS = [
    ("the glass museum", "museum"), ("fenwick gallery", "gallery"), ("the botanic walk", "park"),
    ("old mill theatre", "theatre"), ("st agnes church", "church"), ("riverside boathouse", "boathouse"),
    ("the clockwork arcade", "arcade"), ("parker's pool", "swimming pool"), ("the lantern cinema", "cinema"),
]
STATIONS = [
    "cambridge", "london kings cross", "ely", "norwich", "peterborough", "stansted airport", "stevenage",
    "bishops stortford", "leicester", "birmingham new street",
]
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
STREET_NAMES = ["regent street", "mill road", "king's parade", "hills road", "trumpington street", "castle hill"]

# --- cinema tickets (Taskmaster-3 format)
MOVIES = {
    "action": ["Iron Tide", "The Last Relay", "Fault Line Zero", "Crimson Harbor"],
    "comedy": ["Two Left Feet", "The Accidental Chef", "Weekend at Grandma's Farm", "Office Hours"],
    "drama": ["The Quiet Orchard", "Letters to Rowan", "Salt and Stone", "The Long Winter"],
    "horror": ["The Hollow Room", "Night Shift at Ashby", "Whisper Creek"],
    "animated": ["Pip and the Moon Kite", "Captain Whiskers", "The Lantern Fox"],
    "sci-fi": ["Orbit Nine", "The Glass Planet", "Signal from Vega"],
}
THEATERS = [
    "Cineplex Riverside 12", "Regal Harbor Point", "AMC Westfield 14", "Starlight Drive-In", "Grand Lux Cinema",
    "Cinemark Oak Ridge", "Majestic 8", "Palace Theaters Downtown",
]
SHOW_DATES = ["today", "tonight", "tomorrow", "this Friday", "Saturday", "Sunday afternoon"]
SHOWTIMES = ["1:15pm", "2:40pm", "4:00pm", "4:30pm", "5:45pm", "6:40pm", "7:20pm", "8:10pm", "9:10pm", "10:05pm"]
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
# fmt: on
