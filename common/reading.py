"""Spell out what a Korean speaker reads aloud but the text writes in digits, symbols, Latin or
Hanja: ``학생 12명이 왔습니다`` -> ``학생 열두명이 왔습니다``, before g2pK's pronunciation rules.

Stages run in a fixed order (:data:`_STAGES`), each a regular expression whose match becomes
Hangul: the specific shapes first (URLs, phone numbers, dates, times, ratios, ranges, fractions,
signed numbers), then every number with what follows it (a counter, a unit, a currency, a
particle), then Latin, symbols and Hanja. Counters, units, currencies and loanwords are tables.
Readings follow the National Institute of Korean Language (국립국어원, "NIKL" below): native
numbers before native counters, Sino-Korean numbers otherwise. The module holds small tables
only; the Hanja table (8,500 entries) is read on first use, in the worker.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

_HANJA_TABLE = Path(__file__).with_name("data") / "hanja.tsv"

SINO_DIGITS = "영일이삼사오육칠팔구"
_CODE_DIGITS = "공일이삼사오육칠팔구"  # phone numbers, codes, accounts: 0 is 공
_NATIVE_TENS = ["", "열", "스물", "서른", "마흔", "쉰", "예순", "일흔", "여든", "아흔"]
_NATIVE_ONES = ["", "하나", "둘", "셋", "넷", "다섯", "여섯", "일곱", "여덟", "아홉"]
# Before a counter 하나/둘/셋/넷/스물 shorten: 한 개, 두 명, 세 잔, 네 권, 스무 살.
_ATTRIBUTIVE = {"하나": "한", "둘": "두", "셋": "세", "넷": "네"}
_SMALL_UNITS = [(1000, "천"), (100, "백"), (10, "십")]
_GROUPS = ["", "만", "억", "조", "경"]

# Counters read with native numbers (up to 99; NIKL: 한 개, 두 시, 열두 명). Longest first
# when matched, so 시간 wins over 시 and 개월 (Sino) over 개.
NATIVE_COUNTERS = frozenset(
    [
        "명",
        "개",
        "살",
        "잔",
        "권",
        "마리",
        "시",
        "시간",
        "달",
        "가지",
        "번",
        "대",
        "그루",
        "벌",
        "켤레",
        "송이",
        "척",
        "채",
        "통",
        "줄",
        "장",
        "병",
        "캔",
        "봉지",
        "상자",
        "접시",
        "그릇",
        "사람",
        "곳",
        "군데",
        "자루",
        "자리",
        "판",
        "쌍",
        "모금",
        "방울",
        "알",
        "배",
        "바퀴",
        "걸음",
        "끼",
        "차례",
        "마디",
        "개비",
        "밤",
        "해",
        "꾸러미",
        "다발",
        "조각",
        "가닥",
        "뿌리",
        "묶음",
        "포기",
        "컵",
        "큰술",
        "작은술",
        "스푼",
        "숟가락",
        "국자",
        "꼬집",
        "공기",
        "덩이",
        "팩",
        "박스",
        "정",
        "명씩",
        "개씩",
        "번째",
        "째",
    ]
)
# Counters read with Sino-Korean numbers; any other following word also gets Sino, these are
# listed so a range (2~3일) can repeat its counter and so 개월 is not read as 개.
# Those that count a quantity (2~3일 is fused to 이삼 일: _APPROXIMATE) ...
SINO_QUANTITIES = frozenset(
    [
        "년",
        "일",
        "원",
        "분",
        "초",
        "개월",
        "주",
        "주일",
        "회",
        "점",
        "도",
        "세",
        "인분",
        "평",
        "퍼센트",
        "개국",
        "개년",
        "개소",
        "개사",
        "박",
        "인",
        "달러",
        "유로",
        "엔",
        "위안",
        "파운드",
        "킬로미터",
        "미터",
        "센티미터",
        "밀리미터",
        "킬로그램",
        "그램",
        "리터",
        "밀리리터",
        "칼로리",
        "킬로칼로리",
    ]
)
# ... and those that name (a month, a floor, a chapter: 5~6월 stays 오월에서 유월).
SINO_COUNTERS = SINO_QUANTITIES | frozenset(
    [
        "월",
        "층",
        "호",
        "동",
        "번지",
        "차",
        "등",
        "위",
        "학년",
        "교시",
        "페이지",
        "쪽",
        "년대",
        "대",
        "호선",
        "회차",
        "기",
        "강",
        "장",
        "편",
        "부",
        "조",
        "항",
        "절",
        "권째",
        "인실",
    ]
)
# 번 is "times" (세 번 했다) unless it numbers something (3번 출구, 2번 버스).
_NUMBERING_AFTER_BEON = re.compile(
    r"\s*(?:출구|버스|선|문제|게이트|홈|채널|트랙|좌석|타자|국도|방|창구|테이블|마을버스|"
    r"승강장|플랫폼|레인|코트|환자|손님|자리에|고객|이다|입니다|이에요|이야|이었)"
)
# 24시 편의점: a name for "open all day", said 이십사 시.
_ALL_DAY = re.compile(r"\s*(?:편의점|마트|매장|영업|상담|센터|콜센터|병원|약국|사우나|찜질방|식당)")
# 분 counts people (손님 네 분, 4분 예약) after a word for people or before what is said of
# guests; minutes (4분 뒤) otherwise.
_PEOPLE_BEFORE_BUN = re.compile(
    r"(?:손님|고객|어르신|선생님|부모님|어른|가족|일행|승객|관객|환자)(?:은|는|이|가)?\s?$"
)
_PEOPLE_AFTER_BUN = re.compile(
    r"\s?(?:예약|이서|께서|께|모두|이 오시|이 오셨|이 계시|이 계셨|이 방문|이세요|이신가요|이시죠)"
)
# 대 counts machines after one of these (차량 30대 서른 대, 노트북을 2대 두 대) ...
_MACHINES_BEFORE_DAE = re.compile(
    r"(?:차량|차|자동차|승용차|버스|택시|트럭|화물차|오토바이|자전거|비행기|항공기|여객기|전투기|"
    r"헬기|드론|열차|기차|노트북|컴퓨터|PC|태블릿|휴대폰|스마트폰|TV|텔레비전|카메라|모니터|"
    r"프린터|서버|로봇|기계|장비|에어컨|냉장고|세탁기|엘리베이터|탱크|구급차|소방차|순찰차|"
    r"경찰차|굴착기|크레인)(?:은|는|이|가|을|를|도)?\s?$"
)
# ... and ranks "the N great" before one of these or after a scope (세계 3대 영화제 삼 대,
# 4대 보험 사 대); a round ten alone is an age (30대 삼십 대).
_RANKED_AFTER_DAE = re.compile(
    r"\s?(?:영화제|뉴스|은행|시중은행|보험|그룹|기업|재벌|주주|천왕|강국|도시|명절|과제|원칙|"
    r"요소|악재|메이저|거래소|성인병|질환|문명|명산|사찰|일간지|신문|방송사|이동통신사|금융지주|"
    r"지주|대회|명소|폭포|기적|국정과제|개혁|권역|광역시|의무|범죄|적폐)"
)
_RANK_SCOPE_BEFORE_DAE = re.compile(r"(?:세계|국내|아시아|유럽|역대|전국|국내외|세계적)\s?$")

CURRENCY_SIGNS = {"₩": "원", "$": "달러", "€": "유로", "¥": "엔", "£": "파운드"}
CURRENCY_WORDS = {"USD": "달러", "KRW": "원", "EUR": "유로", "JPY": "엔", "CNY": "위안"}

# Latin units after a number. Case matters (m is metre, M mega); NFKC has already turned ㎞ into
# km, ㎡ into m2 and ℃ into °C. A unit is taken only when no letter follows it.
UNITS = {
    "km/h": "킬로미터 퍼 아워",
    "m/s": "미터 퍼 세컨드",
    "km2": "제곱킬로미터",
    "km²": "제곱킬로미터",
    "m2": "제곱미터",
    "m²": "제곱미터",
    "m3": "세제곱미터",
    "m³": "세제곱미터",
    "cm2": "제곱센티미터",
    "cm²": "제곱센티미터",
    "km": "킬로미터",
    "cm": "센티미터",
    "mm": "밀리미터",
    "nm": "나노미터",
    "μm": "마이크로미터",
    "µm": "마이크로미터",
    "m": "미터",
    "kg": "킬로그램",
    "μg": "마이크로그램",
    "µg": "마이크로그램",
    "mg": "밀리그램",
    "g": "그램",
    "t": "톤",
    "ml": "밀리리터",
    "mL": "밀리리터",
    "l": "리터",
    "L": "리터",
    "cc": "시시",
    "kcal": "킬로칼로리",
    "cal": "칼로리",
    "°C": "도",
    "°F": "도",
    "°": "도",
    "%p": "퍼센트포인트",
    "%": "퍼센트",
    "‰": "퍼밀",
    "KB": "킬로바이트",
    "kB": "킬로바이트",
    "MB": "메가바이트",
    "GB": "기가바이트",
    "TB": "테라바이트",
    "Mbps": "메가비피에스",
    "Gbps": "기가비피에스",
    "kWh": "킬로와트시",
    "kW": "킬로와트",
    "W": "와트",
    "V": "볼트",
    "mAh": "밀리암페어시",
    "Hz": "헤르츠",
    "kHz": "킬로헤르츠",
    "MHz": "메가헤르츠",
    "GHz": "기가헤르츠",
    "ms": "밀리초",
    "dB": "데시벨",
    "ha": "헥타르",
    "hPa": "헥토파스칼",
    "ft": "피트",
    "lb": "파운드",
    "oz": "온스",
}
# NIKL spoken style: 시속 백 킬로미터; 화씨 칠십오 도.
_KMH = {"km/h": "시속", "m/s": "초속"}
_UNIT_PREFIX = {**_KMH, "°F": "화씨"}

# Korean names of Latin letters (NIKL's 외래어 표기: Z is 제트).
LETTER_NAMES = dict(
    zip(
        "abcdefghijklmnopqrstuvwxyz",
        [
            "에이",
            "비",
            "씨",
            "디",
            "이",
            "에프",
            "지",
            "에이치",
            "아이",
            "제이",
            "케이",
            "엘",
            "엠",
            "엔",
            "오",
            "피",
            "큐",
            "알",
            "에스",
            "티",
            "유",
            "브이",
            "더블유",
            "엑스",
            "와이",
            "제트",
        ],
        strict=True,
    )
)
# Words and names read as words, not letters (lower-cased keys). Acronyms said as a word
# (NASA) are here too; any other all-capital word is spelled letter by letter.
LOANWORDS = {
    "nasa": "나사",
    "unesco": "유네스코",
    "unicef": "유니세프",
    "opec": "오펙",
    "fifa": "피파",
    "nato": "나토",
    "uefa": "유에파",
    "asean": "아세안",
    "covid": "코비드",
    "ok": "오케이",
    "iphone": "아이폰",
    "ipad": "아이패드",
    "google": "구글",
    "youtube": "유튜브",
    "samsung": "삼성",
    "hyundai": "현대",
    "kakao": "카카오",
    "kakaotalk": "카카오톡",
    "naver": "네이버",
    "daum": "다음",
    "netflix": "넷플릭스",
    "apple": "애플",
    "microsoft": "마이크로소프트",
    "windows": "윈도우",
    "excel": "엑셀",
    "word": "워드",
    "zoom": "줌",
    "instagram": "인스타그램",
    "facebook": "페이스북",
    "twitter": "트위터",
    "chatgpt": "챗지피티",
    "openai": "오픈에이아이",
    "python": "파이썬",
    "java": "자바",
    "linux": "리눅스",
    "android": "안드로이드",
    "wifi": "와이파이",
    "bluetooth": "블루투스",
    "email": "이메일",
    "e-mail": "이메일",
    "k-pop": "케이팝",
    "kpop": "케이팝",
    "coffee": "커피",
    "pizza": "피자",
    "hello": "헬로",
    "example": "이그잼플",
    "admin": "어드민",
    "info": "인포",
    "help": "헬프",
    "test": "테스트",
    "user": "유저",
    "github": "깃허브",
    "smart": "스마트",
    "phone": "폰",
    "galaxy": "갤럭시",
    "tesla": "테슬라",
    "amazon": "아마존",
    "gmail": "지메일",
    "com": "컴",
    "net": "넷",
    "www": "더블유더블유더블유",
    "http": "에이치티티피",
    "https": "에이치티티피에스",
    "html": "에이치티엠엘",
    "online": "온라인",
    "offline": "오프라인",
    "app": "앱",
    "blog": "블로그",
    "shop": "숍",
    "store": "스토어",  # g2pK's English dictionary drops the r: 스토
    "score": "스코어",
    "news": "뉴스",
    "mail": "메일",
    "cafe": "카페",
    "team": "팀",
    "plan": "플랜",
    "service": "서비스",
    "center": "센터",
    "bus": "버스",
    "taxi": "택시",
    "wi-fi": "와이파이",
    "ceo": "씨이오",
    "korea": "코리아",
    "airport": "에어포트",
    "moksori": "목소리",  # this service's own name, in its addresses
    "vs": "대",  # 한국 vs 일본: 한국 대 일본
}
# Symbols read between words or numbers (not alone: a lone "&" is punctuation).
SYMBOLS = {"&": "앤", "+": "플러스", "=": "이퀄", "×": "곱하기", "÷": "나누기"}
# Words only addresses use (co.kr), said as letters.
ADDRESS_WORDS = {"co": "씨오", "kr": "케이알", "ac": "에이씨", "or": "오알", "go": "지오"}

_NUMBER = r"(?:\d{1,3}(?:,\d{3})+|\d+)"


def sino(number: int) -> str:
    """A whole number in Sino-Korean words, grouped by 만/억/조 (12500 -> 만이천오백)."""
    if number == 0:
        return "영"
    if number >= 10**20:  # past 경: digit by digit, as nobody says it
        return "".join(SINO_DIGITS[int(d)] for d in str(number))
    words = []
    for power in range(len(_GROUPS) - 1, -1, -1):
        group, number = divmod(number, 10 ** (4 * power))
        if group:
            # NIKL reads 10,000 as 만 (not 일만) but 1억 and 1조 with 일.
            words.append(("" if group == 1 and power == 1 else _four(group)) + _GROUPS[power])
    return "".join(words)


def _four(number: int) -> str:
    words = []
    for value, name in _SMALL_UNITS:
        digit, number = divmod(number, value)
        if digit:
            words.append(("" if digit == 1 else SINO_DIGITS[digit]) + name)
    return "".join(words) + (SINO_DIGITS[number] if number else "")


def native(number: int, before_counter: bool = True) -> str | None:
    """1..99 in native Korean (열둘; before a counter 열두), or None outside that range."""
    if not 0 < number < 100:
        return None
    tens, ones = divmod(number, 10)
    one = _NATIVE_ONES[ones]
    ten = _NATIVE_TENS[tens]
    if before_counter:
        one = _ATTRIBUTIVE.get(one, one)
        if not one and tens == 2:
            ten = "스무"
    return ten + one


def digits(text: str) -> str:
    """A code read digit by digit, 0 as 공 (phone numbers, postal codes, accounts)."""
    return "".join(_CODE_DIGITS[int(d)] for d in text if d.isdigit())


def decimal(whole: str, fraction: str) -> str:
    """3.14 -> 삼 점 일사: the fraction digit by digit, 0 as 영."""
    return f"{sino(_int(whole))} 점 {''.join(SINO_DIGITS[int(d)] for d in fraction)}"


def _int(number: str) -> int:
    return int(number.replace(",", ""))


def _counter_at(text: str, start: int) -> str:
    """The counter or unit word starting at ``start`` (after an optional space), or ''."""
    rest = text[start:].lstrip(" ")
    for word in _COUNTER_WORDS:
        another = _ANOTHER_WORD.get(word)
        if rest.startswith(word) and not (another and another.match(rest, len(word))):
            return word
    return ""


# Counters that also begin common words: 1정씩, 4정까지 count pills, 20 정도 and 정상 do not.
_ANOTHER_WORD = {"정": re.compile(r"[가-힣](?<![씩을이은의에까만과와로])")}


_COUNTER_WORDS = sorted(NATIVE_COUNTERS | SINO_COUNTERS, key=len, reverse=True)


def cardinal(number: str, text: str, end: int, before: str = "") -> str:
    """``number`` (digits, maybe comma-grouped) read as the word after it in ``text`` needs:
    native before a native counter (12명 -> 열두), Sino otherwise; 6월 -> 유월, 10월 -> 시월;
    N대 counts machines, ranks (3대 영화제) or is an age (50대 -> 오십); N분 is minutes or
    people. ``before`` is the text just before the number (a few words)."""
    value = _int(number)
    counter = _counter_at(text, end)
    if counter == "월" and value in (6, 10):
        return {6: "유", 10: "시"}[value]  # NIKL 표준어 규정 제6항: 유월, 시월
    after = len(text) - len(text[end:].lstrip(" ")) + len(counter)
    if counter == "번째" and value == 1:
        return "첫"
    if counter == "대" and _MACHINES_BEFORE_DAE.search(before) and native(value):
        return native(value) or ""
    if counter == "대" and (
        value % 10 == 0
        or re.match(r"대\s?\d", text[after - 1 :])
        or _RANKED_AFTER_DAE.match(text, after)
        or _RANK_SCOPE_BEFORE_DAE.search(before)
    ):
        return sino(value)
    people = _PEOPLE_BEFORE_BUN.search(before) or _PEOPLE_AFTER_BUN.match(text, after)
    if counter == "분" and people:
        return native(value) or sino(value)
    numbered = before.endswith("제") or re.search(r"번호\s?$", before)
    if counter == "번" and (numbered or _NUMBERING_AFTER_BEON.match(text, after)):
        return sino(value)
    if counter == "시" and value == 24 and _ALL_DAY.match(text, after):
        return sino(value)
    if counter in NATIVE_COUNTERS and not before.endswith("제"):
        word = native(value)
        if word:
            return word
    return sino(value)


# -- stages ---------------------------------------------------------------------------------------

_URL = re.compile(
    r"(?:https?://)?(?:www\.)?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:com|net|org|kr|io|co|go|ai)"
    r"(?:\.[a-z]{2})?(?:/[A-Za-z0-9_\-./?=&%@]*)?(?![A-Za-z])|https?://[^\s가-힣]+"
)
_EMAIL = re.compile(r"[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_PHONE = re.compile(
    r"(?<![\d.,])(?:\+\d{1,3}[ -]?)?"
    r"(?:(?:\(?0\d{1,2}\)?[ -])?\d{3,4}-\d{4}(?![\d-]|년)|\d{2,6}(?:-\d{2,8}){2,}(?![\d-]))"
)
# Service numbers said digit by digit (119에 신고), unless a counter follows (119명).
# Not a side of a ratio (120:1), a signed amount (-120억) or a magnitude's count (120만).
_SERVICE_NUMBER = re.compile(r"(?<![\d.,:\-−])(11[249]|1330|120)(?![\d.,:]|\s?[만억조천백])")
# A number named as one (인증번호, 우편번호는 12345, 주문 번호: 2025) is read as a code, and
# so are a card's or a phone's last digits (끝자리가 4021인), an extension (내선 2041) and digit
# groups after the name (운송장 번호 6012 3456 7890). A number of one or two digits that a
# counter follows counts instead (대기 번호 27번: 이십칠 번).
# Brackets around it ([483920]를) are not heard: the particle joins the last digit.
_NAMED_CODE = re.compile(
    r"((?:번호|코드|[끝뒷앞] ?자리|내선)(?:는|가|:)?\s?)(?:\[(\d+)\]|(\d+(?: \d+)*)(?![\d.,]))"
)
# Arithmetic: 1+1=2 -> 일 더하기 일은 이; 5×3, 10÷2.
_EQUATION = re.compile(r"(?<![\w.])(\d+)\s?([+×÷])\s?(\d+)(?:\s?=\s?(\d+))?(?![\d.])")
_OPERATORS = {"+": "더하기", "×": "곱하기", "÷": "나누기"}
_LETTER_TWO_LETTER = re.compile(r"\b([A-Z])2([A-Z])\b")  # B2B 비투비, P2P 피투피
_ZERO_CODE = re.compile(r"(?<![\d.,])0\d+(?![\d.,]\d)")
_DATE = re.compile(r"(?<![\d.])(\d{4})\s?([-./])\s?(\d{1,2})\s?\2\s?(\d{1,2})(?!\d)(?:\.(?!\d))?")
# 12.10(수): a month and day before a weekday; 25.12.31: a two-digit year, month and day.
_DOTTED_MONTH_DAY = re.compile(
    r"(?<![\d.])(1[0-2]|0?[1-9])\.(3[01]|[12]\d|0?[1-9])\.?(?=\s?\([월화수목금토일]\))"
)
_SHORT_DATE = re.compile(r"(?<![\d.])(\d\d)\.(1[0-2]|0[1-9])\.(3[01]|[12]\d|0[1-9])(?![\d.])")
_TIME = re.compile(r"(?<![\d:])([01]?\d|2[0-4]):([0-5]\d)(?::([0-5]\d))?(?![\d:]|,\d)")
# 3·1절 삼일절, 6·25 육이오, 5·18 오일팔, 6·10 육십: month and day with a middle dot, said as
# one word; a day past 12 that is not a round ten digit by digit.
_DOTTED_DAY = re.compile(r"(?<![\d.])(1[0-2]|[1-9])\s?[·ㆍ・]\s?([1-9]|[12]\d|3[01])(?![\d.])")
# A score written with a hyphen (2-1로 이겼다) is read as one with a colon: 이 대 일.
_SCORE = re.compile(
    r"(?<![\d-])(\d{1,2})-(\d{1,2})(?![\d-])(?=\s?(?:으로|로)?\s?"
    r"(?:이겼|꺾|승리|패|졌|비겼|앞서|앞섰|뒤지|뒤졌|역전|완승|완패|대승|대패|무승부|끝났|승))"
)
# 1+1, 2+1 on a shop offer are said in English: 원 플러스 원, 투 플러스 원 (an offer is
# named or is what something "is": 2+1이에요; 1+1은 2 stays arithmetic).
_PROMOTION = re.compile(
    r"(?<![\d.])([1-3])\+([1-3])(?![\d=])"
    r"(?=\s?(?:행사|이벤트|상품|할인|특가|증정|혜택|세일|제품|이에요|입니다|이야|이래|이네|이었|짜리))"
)
_ENGLISH_DIGITS = {"1": "원", "2": "투", "3": "쓰리", "4": "포", "5": "파이브"}
_ENGLISH_DIGITS.update({"6": "식스", "7": "세븐", "8": "에잇", "9": "나인"})
# The end of a date range written without its year: 2025.07.01~07.31 -> …에서 칠월 삼십일 일.
_DATE_RANGE_END = re.compile(
    r"(?<=일)\s?[~〜～]\s?(1[0-2]|0?[1-9])\.(3[01]|[12]\d|0?[1-9])\.?(?![\d.])"
)
# 3:2, 1:2:4 (삼 대 이, 일 대 이 대 사), 1:50,000 (a map's scale).
_RATIO_SIDE = rf"{_NUMBER}(?:\.\d+)?"
_RATIO = re.compile(rf"(?<![\d:.,]){_RATIO_SIDE}(?:\s?:\s?{_RATIO_SIDE})+(?![\d:])")
_RANGE = re.compile(rf"({_NUMBER}(?:\.\d+)?)\s?([^\s\d~]*?)\s?[~〜～]\s?({_NUMBER}(?:\.\d+)?)")
# Two adjacent small numbers before one counter are one approximate numeral, as the
# 표준국어대사전 (NIKL) lists them: native 한두, 두세, 서너, 네댓, 대여섯, 예닐곱, 일여덟,
# 엳아홉 (2~3개 두세 개, 1~2시간 한두 시간); Sino 일이, 이삼, 삼사, 사오, 오륙, 육칠, 칠팔, 팔구
# (2~3일 이삼 일, 5~6년 오륙 년) and tens 이삼십 … 팔구십 (20~30대 이삼십 대). 4~5 has two
# standard forms, 너덧 and 네댓 (네댓 is taken: it keeps 네 of 네 명). 10~20 stays 십에서 이십:
# 일이십 could not be confirmed as a headword beside 이삼십 … 팔구십, and is seldom said
# (열 명에서 스무 명, 십 분에서 이십 분 are). Quantities are fused, and so are magnitudes
# (2~3만 원 이삼만 원) and numbered places said together (2~3번 출구 이삼 번 출구); a clock
# hour (2~3시), a month (5~6월), a date (7월 2~3일), a floor or a chapter (제2~3조) keeps
# "A에서 B" (_RANGE), and so do other spans (2~5개, 10~15도, 2~5만 원 이만에서 오만 원). A
# hyphen (2-3개) counts only with the counter glued on; ~ may have spaces around it.
_NATIVE_APPROXIMATE = ["", "한두", "두세", "서너", "네댓", "대여섯", "예닐곱", "일여덟", "엳아홉"]
# 오륙, not 오육: the dictionary's headwords keep the ㄹ of 六 inside the word (오륙, 오륙십).
_SINO_APPROXIMATE = ["", "일이", "이삼", "삼사", "사오", "오륙", "육칠", "칠팔", "팔구"]
_NOT_COUNTING_NATIVE = frozenset(["시", "번째", "째"])


# 12/31, 5/5, 3/2(월): a date when the first number can be a month and the second a day, unless
# it reads as a proper fraction (1/2, 3/4, 5/8: a numerator below a denominator up to 12) with
# no weekday after it. A denominator from 13 to 31 is rare, a day often; so is a fraction >= 1.
_MONTH_DAY = re.compile(r"(?<![\d/])(1[0-2]|0?[1-9])/(3[01]|[12]\d|0?[1-9])(?![\d/]|,\d)")
# A digit glued to capitals is said in English: 5G 파이브지, 4K 포케이, 3D 쓰리디 (a network's
# generation, a screen's resolution, dimensions); A4 에이포, MP3 엠피쓰리, F1 에프원 (one digit
# after at most three capitals: a model or a size; G20 keeps Korean numbers).
_GENERATION = re.compile(r"(?<![\w.])([3-6]G|[48]K|[234]D)(?![A-Za-z0-9])")
# 코로나19, COVID-19: the disease's year, said digit by digit (코로나 일구); 코로나 19명 counts.
_COVID = re.compile(r"(?i)(코로나|covid)\s?-?\s?19(?![\d.,]|\s?(?:명|건|개|일|세|%|퍼센트))")
_OUTS = re.compile(r"(?<!\d)([1-3])\s?아웃")  # baseball: 투아웃, said in English
_LETTERS_DIGIT = re.compile(r"(?<![\w.])([A-Z]{1,3})([1-9])(?![0-9A-Za-z.])")
# What is left of a range between words (서울~부산, 10:00~22:00 once read) is 에서.
_WORD_RANGE = re.compile(r"(?<=[가-힣])\s?[~〜～]\s?(?=[가-힣])")
_WEEKDAY = re.compile(r"(?<=일)\s?\(([월화수목금토일])\)")  # 1일(월) -> 1일 월요일
_FRACTION = re.compile(rf"(?<![\d/])({_NUMBER})\s?[/⁄]\s?({_NUMBER})(?![\d/])")
_SIGNED = re.compile(r"(?<![\w)\].,])([-−+±])(?=\d)")
_CURRENCY_BEFORE = re.compile(
    rf"([₩$€¥£]|(?:USD|KRW|EUR|JPY|CNY)\s?)({_NUMBER})(?:\.(\d+))?\s?(만|억|조)?"
)
_UNIT_NAMES = "|".join(sorted(map(re.escape, UNITS), key=len, reverse=True))
_MAGNITUDE = re.compile(
    rf"(?<![\d.,])({_NUMBER})(?:\.(\d+))?([천백십]?[만억조]|[천백])(?!각)(?=\d|\s|[가-힣]|$)"
)
_UNIT_AHEAD = re.compile(rf"\s?({_UNIT_NAMES})(?![A-Za-z])")
# 2~3개, 2-3개, 20~30대, 2~3kg: two adjacent numbers and what they count (_NATIVE_APPROXIMATE).
_APPROXIMATE = re.compile(
    rf"(?<![\d.,~〜～\-A-Za-z])([1-9]0?)(\s?[~〜～]\s?|-)([1-9]0?)(?![\d.,])"
    rf"(?:\s?({_UNIT_NAMES})(?![A-Za-z]))?"
)
_LATIN = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)?")
_SYMBOL = re.compile(r"(?<=[\w)])\s?([&+=×÷])\s?(?=[\w(])|(?<=[A-Za-z])(\+\+?)(?![A-Za-z0-9+])")
_HASHTAG = re.compile(r"(?<!\w)#(?=[^\W\d_])")  # #맛집: 해시태그 맛집
# A phone's keys, named with a particle or as keys: *를 누르면 별표, # 버튼 샵; * 표시 별표.
_KEY = re.compile(r"(?<![\w*#])([*#])(?=\s?(?:버튼|키|표시)|[을를은는이가](?![가-힣]))")
_KEYS = {"*": "별표", "#": "샵"}
_GREEK = re.compile("[αβγδελμπσωΩΣΔ]")
_GREEK_NAMES = dict(
    zip(
        "αβγδελμπσωΩΣΔ",
        [
            "알파",
            "베타",
            "감마",
            "델타",
            "엡실론",
            "람다",
            "뮤",
            "파이",
            "시그마",
            "오메가",
            "오메가",
            "시그마",
            "델타",
        ],
        strict=True,
    )
)
# №1 (NFKC: No1), No.1: 넘버원, said in English like the rank it names.
_NUMERO = re.compile(r"(?<![A-Za-z])No\.?\s?([1-9])(?![\d.])")
# ㈜, which NFKC makes (주): a company's legal form, said in full.
_COMPANY = re.compile(r"\(주\)")
_HANJA = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


def _url(match: re.Match[str]) -> str:
    """An address as written: a scheme written out is read (에이치티티피에스 콜론 슬래시 슬래시)."""
    scheme, _, rest = match[0].rpartition("://")
    said = f"{LOANWORDS[scheme.lower()]} 콜론 슬래시 슬래시 " if scheme else ""
    return f" {said}{_spell_address(rest.rstrip('/'))} "


def _email(match: re.Match[str]) -> str:
    user, _, domain = match[0].partition("@")
    return f" {_spell_address(user)} 골뱅이 {_spell_address(domain)} "


def _spell_address(text: str) -> str:
    """example.co.kr -> 이그잼플 닷 씨오 닷 케이알: dots as 닷, slashes as 슬래시, words from
    the loanword table, other letters one by one, digits one by one."""
    out = []
    for piece in re.split(r"([./\-_:?=&@])", text):
        if piece in {".", "/", "-", "_", ":", "?", "=", "&", "@"}:
            said = {".": "닷", "/": "슬래시", "-": "대시", "_": "언더바", "@": "골뱅이"}
            out.append(said.get(piece, ""))
        elif piece:
            words = re.findall(r"[A-Za-z]+|\d+", piece)
            out.extend(_address_word(w) if w.isalpha() else digits(w) for w in words)
    return " ".join(w for w in out if w)


def _address_word(word: str) -> str:
    """A piece of an address: a known word, else letters when short (abc, yna) or an acronym,
    else left to g2pK's English dictionary (search, test)."""
    key = word.lower()
    if key in ADDRESS_WORDS:
        return ADDRESS_WORDS[key]
    if key not in LOANWORDS and len(word) <= 3:
        return "".join(LETTER_NAMES[c] for c in key)
    return _latin_word(word)


def _named_code(match: re.Match[str]) -> str:
    number = match[2] or match[3]
    short = len(number) <= 2 and not match[1].startswith("내선")
    if short and _counter_at(match.string, match.end()):
        return match[0]
    return match[1] + " ".join(digits(group) for group in number.split())


def _phone(match: re.Match[str]) -> str:
    text = match[0]
    plus = "플러스 " if text.startswith("+") else ""
    return plus + " ".join(digits(group) for group in re.findall(r"\d+", text))


def _date(match: re.Match[str]) -> str:
    year, _, month, day = match[1], match[2], int(match[3]), int(match[4])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return match[0]
    return f"{sino(int(year))}년 {cardinal(str(month), '월', 0)}월 {sino(day)}일"


def _time(match: re.Match[str]) -> str:
    hour, minute, second = int(match[1]), int(match[2]), match[3]
    words = [f"{native(hour) or sino(hour)}시"]
    if minute:
        words.append(f"{sino(minute)}분")
    if second and int(second):
        words.append(f"{sino(int(second))}초")
    return " ".join(words)


def _dotted_day(match: re.Match[str]) -> str:
    day = int(match[2])
    said = sino(day) if day <= 12 or day % 10 == 0 else digits(match[2]).replace("공", "영")
    return sino(int(match[1])) + said


def _ratio(match: re.Match[str]) -> str:
    return " 대 ".join(_amount(side) for side in re.split(r"\s?:\s?", match[0]))


def _score(match: re.Match[str]) -> str:
    return f"{_amount(match[1])} 대 {_amount(match[2])}"


def _amount(number: str) -> str:
    """A plain number, whole or decimal (1.2 -> 일 점 이), in Sino-Korean."""
    whole, _, fraction = number.partition(".")
    return decimal(whole, fraction) if fraction else sino(_int(whole))


def _range(match: re.Match[str]) -> str:
    """2~3일 -> 2일에서 3일 (NIKL: 물결표 is read 에서 or 부터 ... 까지); the counter repeated
    so each number is read for it. Without a counter it is just 2에서 3."""
    first, between, second = match[1], match[2], match[3]
    text, end = match.string, match.end()
    counter = _counter_at(text, end) or _unit_at(text, end)
    if between and between not in _CURRENCY_AND_UNITS:
        return match[0]
    magnitude = _MAGNITUDE_AHEAD.match(text, end)
    if not (between or counter) and magnitude:  # 2~5만 원: 이만에서 오만 원
        return f"{first}{magnitude[1]}에서 {second}"
    after = len(text) - len(text[end:].lstrip(" ")) + len(counter)
    if counter == "번" and "." not in first and _NUMBERING_AFTER_BEON.match(text, after):
        return f"{sino(_int(first))}번에서 {second}"  # 2~5번 출구: numbers, not times
    return f"{first}{between or counter}에서 {second}"


def _approximate(match: re.Match[str]) -> str:
    """2~3개 -> 두세 개, 2~3일 -> 이삼 일, 20~30대 -> 이삼십 대 (see _APPROXIMATE); anything
    else is left for _RANGE."""
    text, end = match.string, match.end(3)
    first, second = int(match[1]), int(match[3])
    unit = match[4]
    glued = end < len(text) and not text[end].isspace()
    counter = unit or _counter_at(text, end)
    after = len(text) - len(text[end:].lstrip(" ")) + len(counter)
    magnitude = not counter and _MAGNITUDE_AHEAD.match(text, end)  # 2~3만 원: 이삼만 원
    numbering = counter == "번" and _NUMBERING_AFTER_BEON.match(text, after)  # 이삼 번 출구
    if (
        not (counter or magnitude)
        or (match[2] == "-" and not glued)
        or unit in _KMH
        or text[: match.start()].endswith("제")
        or (counter == "일" and re.search(r"월\s?$", text[: match.start()]))
    ):
        return match[0]
    native_counter = (
        counter in NATIVE_COUNTERS and counter not in _NOT_COUNTING_NATIVE and not numbering
    )
    counts = native_counter or numbering or magnitude or counter in SINO_QUANTITIES or unit
    if not counts:
        return match[0]
    if second == first + 1 < 10:
        word = (_NATIVE_APPROXIMATE if native_counter else _SINO_APPROXIMATE)[first]
    elif first >= 20 and first % 10 == 0 and second == first + 10:
        word = _SINO_APPROXIMATE[first // 10] + "십"
    else:
        return match[0]
    if unit:
        return f"{word} {UNITS[unit]}"
    return word if magnitude else f"{word} "


_MAGNITUDE_AHEAD = re.compile(r"([십백천]?[만억조]|[천백])(?!각)")
_CURRENCY_AND_UNITS = set(UNITS) | set(NATIVE_COUNTERS) | set(SINO_COUNTERS) | {"만", "억"}


def _unit_at(text: str, start: int) -> str:
    match = _UNIT_AHEAD.match(text, start)
    return match[1] if match else ""


def _month_day(match: re.Match[str]) -> str:
    month, day = int(match[1]), int(match[2])
    if month < day <= 12 and not re.match(r"\s?\([월화수목금토일]\)", match.string[match.end() :]):
        return match[0]
    return f"{cardinal(match[1], '월', 0)}월 {sino(day)}일"


def _fraction(match: re.Match[str]) -> str:
    return f"{sino(_int(match[2]))}분의 {sino(_int(match[1]))}"


def _signed(match: re.Match[str]) -> str:
    sign, rest = match[1], match.string[match.end() :]
    if sign == "±":
        return "플러스마이너스 "
    if sign == "+":
        return "플러스 "
    temperature = re.match(r"[\d.,]+\s?(°C|°F|°|℃|도)", rest)
    return "영하 " if temperature else "마이너스 "


def _currency_before(match: re.Match[str]) -> str:
    sign = match[1].strip()
    name = CURRENCY_SIGNS.get(sign) or CURRENCY_WORDS[sign]
    amount = decimal(match[2], match[3]) if match[3] else sino(_int(match[2]))
    return f"{amount}{match[4] or ''} {name}"


def _magnitude(match: re.Match[str]) -> str:
    """100만 -> 백만, 3천 -> 삼천, 1만 -> 만, 1.5억 -> 일 점 오억: a number with a Korean
    magnitude after it."""
    value, magnitude = _int(match[1]), match[3]
    if match[2]:
        return decimal(match[1], match[2]) + magnitude
    return ("" if value == 1 and magnitude in ("만", "천", "백") else sino(value)) + magnitude


def _service_number(match: re.Match[str]) -> str:
    if _counter_at(match.string, match.end()):
        return match[0]
    return digits(match[0])


def _equation(match: re.Match[str]) -> str:
    """The result is joined by the topic particle that fits the last number (일은, 이는)."""
    words = f"{sino(int(match[1]))} {_OPERATORS[match[2]]} {sino(int(match[3]))}"
    if match[4] is None:
        return words
    return f"{words}{_topic(words)} {sino(int(match[4]))}"


def _topic(word: str) -> str:
    """은 after a closed syllable, 는 after an open one."""
    return "은" if word and (ord(word[-1]) - 0xAC00) % 28 else "는"


def _number(match: re.Match[str]) -> str:
    before = match.string[max(0, match.start() - 12) : match.start()]
    if match[2]:
        return decimal(match[1], match[2])
    return cardinal(match[1], match.string, match.end(), before)


def _unit_number(match: re.Match[str]) -> str:
    """A number before a Latin unit: always Sino (NIKL: 삼 킬로미터); km/h and m/s become
    시속/초속 in front; another unit after a slash is "per" it (35μg/m3: 마이크로그램 퍼
    세제곱미터)."""
    number, fraction, unit = match[1], match[2], match[3]
    amount = decimal(number, fraction) if fraction else sino(_int(number))
    prefix = _UNIT_PREFIX.get(unit, "")
    name = UNITS[unit]
    if unit in _KMH:
        name = name.split(" ")[0]
    if match[4]:
        name = f"{name} 퍼 {UNITS[match[4]]}"
    return f"{prefix} {amount} {name}".strip()


_UNIT_AFTER_MAGNITUDE = re.compile(rf"(?<=[만억조])\s?({_UNIT_NAMES})(?![A-Za-z0-9])")  # 30만 km
_NUMBER_UNIT = re.compile(
    rf"(?<![\d.])({_NUMBER})(?:\.(\d+))?\s?({_UNIT_NAMES})(?:/({_UNIT_NAMES}))?(?![A-Za-z0-9])"
)


def _latin_word(word: str) -> str:
    """A Latin word as Korean says it: the loanword table, else letters when it is an acronym
    or unknown to g2pK's English dictionary (left as is here: g2pK reads it first)."""
    key = word.lower()
    if key in LOANWORDS:
        return LOANWORDS[key]
    if word.isupper() or len(word) == 1:
        return "".join(LETTER_NAMES[c] for c in key)
    return word


def _latin(match: re.Match[str]) -> str:
    """A Latin word, or two joined by a hyphen (Wi-Fi is one loanword, AI-BOX two words)."""
    word = match[0]
    if "-" in word and word.lower() not in LOANWORDS:
        return " ".join(_latin_word(part) for part in word.split("-"))
    return _latin_word(word)


def _symbol(match: re.Match[str]) -> str:
    if match[2]:  # A+ 학점, C++: glued to the letter
        return " ".join(SYMBOLS["+"] for _ in match[2])
    return f" {SYMBOLS[match[1]]} "


@lru_cache(maxsize=1)
def _hanja_readings() -> dict[str, str]:
    """The Hanja table, read once per process on the first Hanja seen (the API never does)."""
    readings = {}
    for line in _HANJA_TABLE.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            char, _, reading = line.partition("\t")
            readings[char] = reading
    return readings


# 金 is 김 as a surname (金九 김구, 金 총리) and in place names (金浦, 金海), 금 in these words
# (gold, money, Friday) and before Hangul (金값, 金메달).
_GEUM_WORDS = (
    "金融",
    "金額",
    "金庫",
    "金曜",
    "金利",
    "金屬",
    "金銀",
    "金賞",
    "金品",
    "金塊",
    "金星",
)
_TITLES = "총리|대통령|위원장|장관|의원|대표|회장|씨|선생|감독|선수|전 "
_GIM = re.compile(
    rf"金(?=[\u4e00-\u9fff]{{1,2}}(?![\u4e00-\u9fff])|\s(?:[가-힣]+\s)?(?:{_TITLES}))"
)

# 두음법칙 (NIKL 한글 맞춤법 제10-12항): 女子 여자, 老人 노인, 李 이 at the start of a word.
_INITIAL_RIEUL = {"랴": "야", "려": "여", "례": "예", "료": "요", "류": "유", "리": "이"}
_INITIAL_RIEUL_N = {"라": "나", "래": "내", "로": "노", "뢰": "뇌", "루": "누", "르": "느"}
_INITIAL_NIEUN = {"녀": "여", "뇨": "요", "뉴": "유", "니": "이"}


def _initial_sound(syllable: str) -> str:
    code = ord(syllable) - 0xAC00
    if not 0 <= code < 11172:
        return syllable
    coda = code % 28
    head = chr(0xAC00 + code - coda)
    for table in (_INITIAL_RIEUL, _INITIAL_RIEUL_N, _INITIAL_NIEUN):
        if head in table:
            return chr(ord(table[head]) + coda)
    return syllable


_D_OR_J = {3, 12}  # the initials ㄷ and ㅈ, as (syllable - 가) // 588
# 률 and 렬 after a vowel or ㄴ are 율 and 열 (한글 맞춤법 제11항: 비율, 규율, 나열, 선열).
_RYUL = {"률": "율", "렬": "열"}
# Words in which a character takes another of its readings (音樂 음악, not 음락).
_HANJA_WORDS = {
    "音樂": "음악",
    "樂器": "악기",
    "農樂": "농악",
    "許諾": "허락",
    "受諾": "수락",
    "木瓜": "모과",
    "十月": "시월",
    "六月": "유월",
    "漢拏山": "한라산",
}
_HANJA_WORD = re.compile("|".join(sorted(_HANJA_WORDS, key=len, reverse=True)))


def _hanja(match: re.Match[str]) -> str:
    table = _hanja_readings()
    readings = [table.get(ch, "") for ch in match[0]]
    for i, ch in enumerate(match[0]):
        after = readings[i + 1][:1] if i + 1 < len(readings) else ""
        if ch == "不" and after and (ord(after) - 0xAC00) // 588 in _D_OR_J:
            readings[i] = "부"  # 부동산, 부족: 不 is 부 before ㄷ and ㅈ
        previous = readings[i - 1][-1:] if i else ""
        if readings[i] in _RYUL and previous and (ord(previous) - 0xAC00) % 28 in (0, 4):
            readings[i] = _RYUL[readings[i]]  # coda none or ㄴ
    word = "".join(readings)
    if _GIM.match(match.string, match.start()) and not match[0].startswith(_GEUM_WORDS):
        word = "김" + word[1:]
    start = match.start()
    at_word_start = start == 0 or not match.string[start - 1].isalnum()
    if word and at_word_start:
        word = _initial_sound(word[0]) + word[1:]
    return word


_STAGES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    # Past 20 digits a number is a code nobody reads as a quantity (and int() has limits).
    (re.compile(r"\d{21,}"), lambda m: "".join(SINO_DIGITS[int(d)] for d in m[0])),
    (_EMAIL, _email),
    (_URL, _url),
    (_DATE, _date),
    (_DOTTED_MONTH_DAY, lambda m: f"{cardinal(m[1], '월', 0)}월 {sino(int(m[2]))}일"),
    (
        _SHORT_DATE,
        lambda m: f"{sino(int(m[1]))}년 {cardinal(m[2], '월', 0)}월 {sino(int(m[3]))}일",
    ),
    (_DATE_RANGE_END, lambda m: f"에서 {cardinal(m[1], '월', 0)}월 {sino(int(m[2]))}일"),
    (_PHONE, _phone),
    (_NAMED_CODE, _named_code),
    (_SERVICE_NUMBER, _service_number),
    (_PROMOTION, lambda m: f"{_ENGLISH_DIGITS[m[1]]} 플러스 {_ENGLISH_DIGITS[m[2]]}"),
    (_EQUATION, _equation),
    (_LETTER_TWO_LETTER, lambda m: f"{LETTER_NAMES[m[1].lower()]}투{LETTER_NAMES[m[2].lower()]}"),
    (_NUMERO, lambda m: f"넘버{_ENGLISH_DIGITS[m[1]]}"),
    (_COVID, lambda m: f"{'코로나' if m[1] == '코로나' else '코비드'} 일구"),
    (_OUTS, lambda m: f"{_ENGLISH_DIGITS[m[1]]}아웃"),
    (_LETTERS_DIGIT, lambda m: _latin_word(m[1]) + _ENGLISH_DIGITS[m[2]]),
    (_TIME, _time),
    (_RATIO, _ratio),
    (_SCORE, _score),
    (_DOTTED_DAY, _dotted_day),
    (_APPROXIMATE, _approximate),
    (_RANGE, _range),
    (_MONTH_DAY, _month_day),
    (_FRACTION, _fraction),
    (_GENERATION, lambda m: _ENGLISH_DIGITS[m[1][0]] + LETTER_NAMES[m[1][1].lower()]),
    (_SIGNED, _signed),
    (_CURRENCY_BEFORE, _currency_before),
    (_ZERO_CODE, lambda m: digits(m[0])),
    (_MAGNITUDE, _magnitude),
    (_NUMBER_UNIT, _unit_number),
    (_UNIT_AFTER_MAGNITUDE, lambda m: f" {UNITS[m[1]]}"),
    (re.compile(rf"(?<![\d.])({_NUMBER})(?:\.(\d+))?"), _number),
    (_WORD_RANGE, lambda m: "에서 "),
    (_WEEKDAY, lambda m: f" {m[1]}요일"),
    (_KEY, lambda m: _KEYS[m[1]]),
    (_GREEK, lambda m: _GREEK_NAMES[m[0]]),
    (_COMPANY, lambda m: "주식회사 "),
    (_SYMBOL, _symbol),
    (_HASHTAG, lambda m: "해시태그 "),
    (_LATIN, _latin),
    (_HANJA_WORD, lambda m: _HANJA_WORDS[m[0]]),
    (_HANJA, _hanja),
]


def spell_out(text: str) -> str:
    """``text`` with numbers, dates, times, units, money, symbols, acronyms and Hanja written
    as the Hangul words a Korean speaker says; the rest (particles included) untouched."""
    for pattern, replace in _STAGES:
        text = pattern.sub(replace, text)
    return re.sub(r" {2,}", " ", text).strip()
