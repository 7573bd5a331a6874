"""Country profiles for the synthetic register: names, spelling variants, admin areas.

Everything here is data. Lists are ordered by frequency (most common first); the
generator draws from them with Zipf-like weights, so a dozen family names and a
dozen given names cover most people, as in real Sahel and Horn-of-Africa registers.

Variant tables map a canonical spelling to the spellings clerks actually write
(transliteration, orthography, French vs Somali spelling). For the horn profile the
first variant of a name is its Somali-orthography form (x = h, c = ʿayn).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Profile:
    """Name stock, variants and geography of one country profile."""

    name: str
    country_code: str
    patronymic: bool  # True: given + father + grandfather; False: given + family name
    male_given: tuple[str, ...]
    female_given: tuple[str, ...]
    family_names: tuple[str, ...]  # empty for patronymic profiles
    particle_families: tuple[str, ...]  # family names with a particle (Ag, Ould, Ben)
    compound_male: tuple[str, ...]  # second given names of compound names
    compound_female: tuple[str, ...]
    variants: dict[str, tuple[str, ...]]
    honorific_male: tuple[str, ...]
    honorific_female: tuple[str, ...]
    regions: dict[str, tuple[str, ...]]  # region -> communes
    region_weights: tuple[float, ...]
    village_syllables: tuple[str, ...]
    village_suffixes: tuple[str, ...]
    fixed_villages: dict[str, tuple[str, ...]] = field(default_factory=dict)
    phone_prefixes: tuple[str, ...] = ()
    phone_digits: int = 8
    nid_digits: int = 14
    nid_letter: bool = True
    zipf_family: float = 1.05
    zipf_given: float = 1.0


# fmt: off
SAHEL = Profile(
    name="sahel",
    country_code="223",
    patronymic=False,
    male_given=(
        "Mamadou", "Moussa", "Oumar", "Ibrahim", "Adama", "Seydou", "Bakary", "Amadou",
        "Boubacar", "Souleymane", "Ousmane", "Abdoulaye", "Modibo", "Drissa", "Sékou",
        "Lassana", "Yacouba", "Issa", "Siaka", "Daouda", "Cheick", "Sidiki", "Youssouf",
        "Alou", "Madou", "Dramane", "Salif", "Tiémoko", "Hamidou", "Hamadoun", "Boureima",
        "Aliou", "Mamoutou", "Bourama", "Idrissa", "Kalifa", "Fousseyni", "Zoumana",
        "Nouhoum", "Mahamane", "Karim", "Samba", "Soumaïla", "Abdoulkarim", "Yaya",
        "Tidiani", "Lamine", "Bréhima", "Mody", "Ahmadou",
    ),
    female_given=(
        "Fatoumata", "Aminata", "Mariam", "Awa", "Kadiatou", "Oumou", "Aïssata", "Hawa",
        "Ramata", "Djénéba", "Salimata", "Kadidia", "Assitan", "Bintou", "Coumba", "Rokia",
        "Safiatou", "Fanta", "Nana", "Maïmouna", "Korotoumou", "Sitan", "Kani", "Nassira",
        "Adiaratou", "Aïcha", "Mah", "Sali", "Tenin", "Massitan", "Haby", "Néné",
        "Fatimata", "Hadiza", "Djélika", "Sata", "Minata", "Kadia", "Batoma", "Founé",
    ),
    family_names=(
        "Traoré", "Coulibaly", "Diarra", "Keïta", "Koné", "Diallo", "Sangaré", "Touré",
        "Cissé", "Dembélé", "Sidibé", "Konaté", "Maïga", "Sissoko", "Doumbia", "Camara",
        "Kanté", "Samaké", "Sanogo", "Ballo", "Bagayoko", "Fofana", "Dicko", "Haïdara",
        "Guindo", "Togo", "Kouyaté", "Mariko", "Tangara", "Berthé", "Bah", "Sow", "Barry",
        "Dramé", "Kamissoko", "Goïta", "Dolo", "Kassogué", "Tounkara", "Niaré", "Daou",
        "Fomba", "Diakité", "Sylla", "Soumaré", "Thiam", "Niangaly", "Boré", "Timbiné",
        "Sacko", "Yattara", "Djiré", "Ouattara", "Kané", "Magassa", "Diawara", "Samassékou",
        "Cissoko", "Dagnon", "Bengaly", "Mallé", "Tembély", "Karambé", "Ongoïba", "Sogoba",
        "Dakouo", "Koïta", "Sinayoko", "Dao", "Nientao",
    ),
    particle_families=(
        "Ag Mohamed", "Ag Alhousseini", "Ag Intalla", "Ould Sidi", "Ould Ahmed", "Ben Ali",
        "Ag Ahmed", "Ould Moustapha",
    ),
    compound_male=("Lamine", "Cheick", "Oumar", "Baba", "Bassirou", "Sidy", "Kalilou", "Moctar"),
    compound_female=("Binta", "Kadia", "Maïmouna", "Sira", "Oumou", "Fanta"),
    variants={
        "Mamadou": ("Mahamadou", "Mamadu", "Mamadoû", "Mohamadou"),
        "Moussa": ("Musa", "Mousa", "Moussà"),
        "Oumar": ("Omar", "Umar", "Oumarou"),
        "Ibrahim": ("Ibrahima", "Brahima", "Ibrahime"),
        "Adama": ("Adame", "Addama"),
        "Seydou": ("Seidou", "Seydu", "Saidou"),
        "Bakary": ("Bakari", "Bakaye", "Backary"),
        "Amadou": ("Ahmadou", "Hamadou", "Amadu"),
        "Boubacar": ("Boubakar", "Aboubacar", "Bubakar"),
        "Souleymane": ("Soulemane", "Sulayman", "Souleimane"),
        "Ousmane": ("Usman", "Osman", "Housmane"),
        "Abdoulaye": ("Abdulaye", "Abdoulai", "Ablaye"),
        "Sékou": ("Sekou", "Seku", "Sekouba"),
        "Youssouf": ("Yusuf", "Youssoufa", "Yousouf"),
        "Daouda": ("Dawuda", "Daoud"),
        "Cheick": ("Cheikh", "Chaka", "Check"),
        "Drissa": ("Idrissa", "Dirissa"),
        "Lassana": ("Lassina", "Lassane"),
        "Yacouba": ("Yacoub", "Yakuba"),
        "Fatoumata": ("Fatimata", "Fatouma", "Fatoumatou", "Fatumata"),
        "Aminata": ("Aminatou", "Aminta", "Minata"),
        "Mariam": ("Mariame", "Maryam", "Mariama"),
        "Awa": ("Aoua", "Hawa"),
        "Kadiatou": ("Kadiatu", "Khadiatou", "Kadidiatou"),
        "Oumou": ("Umu", "Oumy"),
        "Aïssata": ("Aissata", "Assata", "Aïchata"),
        "Hawa": ("Haoua", "Awa"),
        "Djénéba": ("Jeneba", "Dieneba", "Djeneba"),
        "Salimata": ("Salimatou", "Salamata"),
        "Kadidia": ("Kadija", "Khadidja"),
        "Assitan": ("Asitan", "Assetou"),
        "Bintou": ("Bintu", "Binta"),
        "Rokia": ("Rokiatou", "Roukia"),
        "Coulibaly": ("Koulibaly", "Kulibali", "Coulibali", "Kouloubaly"),
        "Diarra": ("Jara", "Diara", "Djarra"),
        "Traoré": ("Tarawere", "Traouré", "Traorè"),
        "Keïta": ("Kéita", "Keyta", "Kaïta"),
        "Koné": ("Konè", "Konneh"),
        "Diallo": ("Jallo", "Dialo"),
        "Touré": ("Ture", "Tourè"),
        "Cissé": ("Sissé", "Sise", "Cissè"),
        "Dembélé": ("Dembelé", "Dembélè"),
        "Sidibé": ("Sidibeh", "Sidibè"),
        "Sangaré": ("Sangaret", "Sangarè"),
        "Konaté": ("Konatè", "Konnaté"),
        "Maïga": ("Mahiga", "Mayga"),
        "Sissoko": ("Cissoko", "Sisoko"),
        "Doumbia": ("Dumbia", "Doumbiya"),
        "Camara": ("Kamara",),
        "Sanogo": ("Sanogho", "Sanogoh"),
        "Bagayoko": ("Bagayogo",),
        "Haïdara": ("Aidara", "Haydara"),
        "Ouattara": ("Watara", "Wattara"),
        "Diakité": ("Jakite", "Diakitè"),
        "Samaké": ("Samakè", "Samakeh"),
        "Kouyaté": ("Kouyatè", "Kuyate"),
    },
    honorific_male=("El Hadj", "Elhadj", "Hadji"),
    honorific_female=("Hadja", "Hadjia"),
    regions={
        "Kayes": ("Kayes", "Bafoulabé", "Kita", "Diéma", "Nioro du Sahel", "Yélimané"),
        "Koulikoro": ("Koulikoro", "Kati", "Kolokani", "Banamba", "Dioïla", "Nara"),
        "Sikasso": ("Sikasso", "Koutiala", "Bougouni", "Kadiolo", "Yorosso", "Yanfolila"),
        "Ségou": ("Ségou", "San", "Bla", "Niono", "Macina", "Tominian"),
        "Mopti": ("Mopti", "Djenné", "Bandiagara", "Bankass", "Koro", "Douentza"),
        "Tombouctou": ("Tombouctou", "Diré", "Goundam", "Niafunké"),
        "Gao": ("Gao", "Ansongo", "Bourem"),
    },
    region_weights=(0.16, 0.20, 0.22, 0.18, 0.14, 0.05, 0.05),
    village_syllables=(
        "ba", "ko", "la", "so", "ni", "da", "ma", "ké", "di", "sa", "kou", "ti", "fa",
        "na", "ga", "bou", "sé", "dia", "to", "mo", "fi", "bé", "ka", "si", "zan", "kin",
        "nian", "ye", "woro", "dié",
    ),
    village_suffixes=("bougou", "koro", "dougou", "ba", "la", "na", "ni", "sso", "", "", ""),
    fixed_villages={},
    phone_prefixes=(
        "76", "77", "78", "79", "66", "65", "70", "71", "72", "73", "74", "75", "90", "91",
        "92", "93", "94", "95", "82", "83", "89", "60", "61", "62", "63", "64",
    ),
    phone_digits=8,
    nid_digits=14,
    nid_letter=True,
)


HORN = Profile(
    name="horn",
    country_code="253",
    patronymic=True,
    male_given=(
        "Mohamed", "Ahmed", "Ali", "Hassan", "Abdi", "Omar", "Abdillahi", "Ismail",
        "Houssein", "Abdourahman", "Ibrahim", "Moussa", "Youssouf", "Osman", "Aden", "Said",
        "Daher", "Idriss", "Elmi", "Robleh", "Farah", "Abdoulkader", "Mahamoud", "Djama",
        "Hersi", "Warsama", "Dirieh", "Awaleh", "Abdallah", "Khaireh", "Houmed", "Yacin",
        "Bouh", "Guedi", "Kamil", "Dini", "Kassim", "Barkad", "Waberi", "Guelleh", "Abdo",
        "Aboubaker", "Saleh", "Hamadou", "Loita",
    ),
    female_given=(
        "Fatouma", "Hawa", "Amina", "Deka", "Ifrah", "Halima", "Khadija", "Asma", "Safia",
        "Zahra", "Hodan", "Roukia", "Saada", "Mouna", "Kaltoum", "Idil", "Nimo", "Aicha",
        "Fardoussa", "Hasna", "Ayan", "Mariam", "Neima", "Oubah", "Sahra", "Hibo", "Filsan",
        "Raha", "Kadra", "Samira", "Hamda", "Moumina",
    ),
    family_names=(),
    particle_families=(),
    compound_male=(),
    compound_female=(),
    variants={
        "Mohamed": ("Maxamed", "Mohammed", "Mahamed", "Mohamad", "Muhammad"),
        "Ahmed": ("Axmed", "Ahmad", "Hamed"),
        "Ali": ("Cali", "Aly"),
        "Hassan": ("Xasan", "Hasan", "Hassen"),
        "Abdi": ("Cabdi", "Abdy"),
        "Omar": ("Cumar", "Oumar", "Umar"),
        "Abdillahi": ("Cabdullahi", "Abdullahi", "Abdoullahi", "Abdilahi"),
        "Ismail": ("Ismaaciil", "Ismael", "Ismaïl"),
        "Houssein": ("Xuseen", "Hussein", "Husein", "Houssen"),
        "Abdourahman": ("Cabdiraxmaan", "Abdirahman", "Abdourahmane", "Abdoul Rahman"),
        "Ibrahim": ("Ibraahim", "Ibrahime", "Ibrahin"),
        "Moussa": ("Muuse", "Musa", "Mousa"),
        "Youssouf": ("Yuusuf", "Yusuf", "Youssef"),
        "Osman": ("Cusmaan", "Ousmane", "Othman"),
        "Aden": ("Aadan", "Adan", "Adene"),
        "Said": ("Saciid", "Saeed", "Saïd"),
        "Daher": ("Daahir", "Dahir"),
        "Idriss": ("Idiris", "Idris"),
        "Elmi": ("Cilmi", "Elmy"),
        "Robleh": ("Rooble", "Roble"),
        "Farah": ("Faarax", "Fara"),
        "Abdoulkader": ("Cabdulqaadir", "Abdulkadir", "Abdelkader", "Abdoul Kader"),
        "Mahamoud": ("Maxamuud", "Mahmoud", "Mohamoud"),
        "Djama": ("Jaamac", "Jama"),
        "Hersi": ("Xirsi", "Hirsi"),
        "Warsama": ("Warsame", "Warsamé"),
        "Dirieh": ("Diiriye", "Dirie"),
        "Awaleh": ("Cawaale", "Awale"),
        "Abdallah": ("Cabdalla", "Abdalla", "Abdel Allah"),
        "Khaireh": ("Khayre", "Kheire"),
        "Yacin": ("Yaasiin", "Yassin"),
        "Bouh": ("Buux", "Buh"),
        "Guedi": ("Geedi", "Gedi"),
        "Houmed": ("Xumed", "Humed", "Hummad"),
        "Kamil": ("Kaamil", "Kamel"),
        "Guelleh": ("Geelle", "Gelle"),
        "Aboubaker": ("Abuukar", "Aboubakar", "Abubakar"),
        "Fatouma": ("Faadumo", "Fatuma", "Fatoumata", "Fadumo"),
        "Hawa": ("Xaawo", "Hawo", "Hawaa"),
        "Amina": ("Aamina", "Aminah"),
        "Deka": ("Deeqa", "Dheka"),
        "Ifrah": ("Ifraax", "Ifra"),
        "Halima": ("Xaliimo", "Halimo"),
        "Khadija": ("Khadiijo", "Kadija", "Hadija"),
        "Asma": ("Asmaa", "Asmo"),
        "Safia": ("Saafiya", "Safiya", "Safiyo"),
        "Zahra": ("Sahro", "Zahro", "Zahara"),
        "Hodan": ("Hoodan", "Houdan"),
        "Roukia": ("Ruqiyo", "Rukia", "Rouqiya"),
        "Kaltoum": ("Kaltuun", "Kaltouma"),
        "Aicha": ("Caasho", "Aisha", "Aïcha"),
        "Mariam": ("Maryan", "Maryam", "Mariame"),
        "Sahra": ("Saxra", "Sara"),
        "Hibo": ("Hibaaq", "Hiba"),
        "Mouna": ("Muna", "Mounah"),
        "Nimo": ("Nimco", "Nima"),
    },
    honorific_male=("Hadji", "Xaaji", "Cheikh"),
    honorific_female=("Hadja", "Xaajo"),
    regions={
        "Djibouti": ("Ras Dika", "Boulaos", "Balbala"),
        "Ali Sabieh": ("Ali Sabieh", "Holhol", "Ali Addeh", "Assamo"),
        "Dikhil": ("Dikhil", "As Eyla", "Yoboki", "Mouloud", "Gorabous"),
        "Tadjourah": ("Tadjourah", "Randa", "Dorra", "Balho", "Adailou"),
        "Obock": ("Obock", "Alaili Dadda", "Khor Angar", "Medeho"),
        "Arta": ("Arta", "Wea", "Damerjog", "Karta"),
    },
    region_weights=(0.58, 0.09, 0.11, 0.10, 0.05, 0.07),
    village_syllables=(
        "da", "bo", "ga", "ha", "la", "ma", "dar", "ri", "ka", "go", "dou", "bi", "ad",
        "ar", "wa", "gab", "mou", "ho", "sa", "bal", "dik", "el", "ou", "ta",
    ),
    village_suffixes=("leh", "ley", "da", "o", "a", "", "", ""),
    fixed_villages={
        "Ras Dika": ("Quartier 1", "Quartier 2", "Quartier 3", "Quartier 4", "Quartier 5",
                     "Quartier 6", "Quartier 7", "Ambouli", "Salines Ouest", "Plateau du Serpent"),
        "Boulaos": ("Arhiba", "Einguela", "Quartier 7 bis", "Djebel", "Gabode 1", "Gabode 2",
                    "Gabode 3", "Hayableh", "Haramous", "Cite Hodan"),
        "Balbala": ("PK12", "Hodan 1", "Hodan 2", "Warabaley", "T3", "Cheikh Moussa",
                    "Layableh", "Balbala Ancien", "Phase 1", "Phase 2", "Q Doraleh",
                    "Dar es Salam"),
    },
    phone_prefixes=("77",),
    phone_digits=8,
    nid_digits=10,
    nid_letter=False,
    zipf_given=0.95,
)

# fmt: on

PROFILES: dict[str, Profile] = {"sahel": SAHEL, "horn": HORN}
