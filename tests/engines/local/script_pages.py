"""Pages in scripts the embedded recogniser cannot read (Korean, Arabic), rendered with real
fonts: Debian's fonts-wqy-zenhei (Hangul) and fonts-dejavu-core (Arabic, shaped by raqm)."""

from __future__ import annotations

from tests.engines.local.pages import CJK, SANS, Page, Sheet, font

KO_LINES = [
    "코로나 관련 보험약관 개선과제",
    "국회입법조사처는 보험금 지급 문제를 검토하였다.",
    "감염병 예방법의 규정이 변경되어 적용되었다.",
    "재해보험금의 지급 기준을 명확하게 해야 한다.",
    "보험회사와 가입자 사이의 분쟁이 늘어나고 있다.",
    "정부는 약관의 해석 기준을 마련할 필요가 있다.",
]
AR_LINES = [
    "تحسين الإنتاجية وحل المشكلات",
    "تعتبر البرمجة من الأدوات القوية التي تعزز الإنتاجية",
    "وتساعد في إيجاد حلول فعالة للمشكلات المختلفة",
    "يمكن استخدام اللغات لتحليل البيانات بسرعة كبيرة",
    "مما يسهل اتخاذ القرارات في المؤسسات الحديثة",
    "ويستطيع المبرمج كتابة برامج صغيرة لحل المسائل",
]


def korean_page() -> Page:
    s = Sheet()
    for k, line in enumerate(KO_LINES):
        s.text((60, 60 + 56 * k), line, font(CJK, 40 if k == 0 else 30))
    return s.page("korean", "ko")


def arabic_page() -> Page:
    s = Sheet()
    for k, line in enumerate(AR_LINES):
        face = font(SANS, 40 if k == 0 else 30)
        s.text((940 - round(face.getlength(line)), 60 + 60 * k), line, face)
    return s.page("arabic", "ar")
