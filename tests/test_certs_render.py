"""Certificates: the signed payload, serials and tokens, and the PDF/PNG as a phone and a reader see them."""
from __future__ import annotations

import ctypes
import datetime as dt
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import threading
import unicodedata
from pathlib import Path

import pypdfium2
import pypdfium2.raw as pdfium_c
import pytest
from PIL import Image

from certs import (
    CertificateData,
    MissingGlyphsError,
    canonical_payload,
    format_serial,
    generate_signing_key,
    key_id,
    new_verify_token,
    parse_serial,
    public_key,
    render_pdf,
    render_png,
    sign,
    signature_key_id,
    verify,
)
from certs.artwork import PAGE_H, PAGE_W
from tests.factories import decode_qr

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
ISSUERS = ("中国心理学会心理学标准与服务研究委员会", "高校心理委员研究协作组", "毫末高校心理委员工作平台")
INNER_FRAME = 43.5  # the innermost rule of the border, in points from each edge
BODY_WIDTH = PAGE_W - 300


def make_data(**changes) -> CertificateData:
    fields = dict(
        holder_name="张晓雯",
        school="华东师范大学",
        student_number="10212345678",
        course_title="心理委员MOOC",
        score=92,
        serial="XW-2026-000123",
        issued_on=dt.date(2026, 11, 29),
        verify_url="https://xinwei.example.cn/c/kQ3v9Zt0bW4xYp7LmN2sR8aJ5dHfUe6G",
        issuers=ISSUERS,
        version=1,
        kind="electronic",
    )
    fields.update(changes)
    return CertificateData(**fields)


def save_artifact(name: str, data: bytes) -> None:
    """Keep a rendered file in test-artifacts/ (git-ignored) for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / name).write_bytes(data)


@pytest.fixture(scope="module")
def sample() -> CertificateData:
    return make_data()


@pytest.fixture(scope="module")
def sample_pdf(sample: CertificateData) -> bytes:
    pdf = render_pdf(sample)
    save_artifact("certificate-sample.pdf", pdf)
    return pdf


@pytest.fixture(scope="module")
def sample_png(sample_pdf: bytes) -> bytes:
    png = render_png(sample_pdf)
    save_artifact("certificate-sample.png", png)
    return png


def page_text(pdf: bytes) -> str:
    doc = pypdfium2.PdfDocument(pdf)
    try:
        textpage = doc[0].get_textpage()
        return textpage.get_text_range()
    finally:
        doc.close()


def flat(text: str) -> str:
    """Text with line breaks and spaces removed, for fields a paragraph may wrap."""
    return re.sub(r"\s+", "", text)


def text_box(pdf: bytes, needle: str) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of the first occurrence of `needle` on the page, in points."""
    doc = pypdfium2.PdfDocument(pdf)
    try:
        textpage = doc[0].get_textpage()
        found = textpage.search(needle, match_case=True).get_next()
        assert found, f"{needle!r} not found on the page"
        start, count = found
        boxes = [textpage.get_charbox(i) for i in range(start, start + count)]
        return (min(b[0] for b in boxes), min(b[1] for b in boxes),
                max(b[2] for b in boxes), max(b[3] for b in boxes))
    finally:
        doc.close()


def rasterise(pdf: bytes, dpi: int, path: Path) -> Path:
    doc = pypdfium2.PdfDocument(pdf)
    try:
        doc[0].render(scale=dpi / 72).to_pil().save(path)
    finally:
        doc.close()
    return path


# --- payload and signature ----------------------------------------------------------------------

def test_canonical_payload_is_sorted_compact_nfc_json(sample: CertificateData) -> None:
    payload = canonical_payload(sample)
    assert payload == (
        '{"course_title":"心理委员MOOC","format":"xinwei.certificate/1","holder_name":"张晓雯",'
        '"issued_on":"2026-11-29","issuers":["中国心理学会心理学标准与服务研究委员会",'
        '"高校心理委员研究协作组","毫末高校心理委员工作平台"],"kind":"electronic",'
        '"school":"华东师范大学","score":92,"serial":"XW-2026-000123",'
        '"student_number":"10212345678",'
        '"verify_url":"https://xinwei.example.cn/c/kQ3v9Zt0bW4xYp7LmN2sR8aJ5dHfUe6G","version":1}'
    ).encode("utf-8")
    body = json.loads(payload)
    assert list(body) == sorted(body)


def test_canonical_payload_ignores_dict_order_and_unicode_form() -> None:
    nfc = make_data(holder_name="Zoë Liú", school="Université Lumière")
    fields = json.loads(canonical_payload(nfc))
    fields["holder_name"] = unicodedata.normalize("NFD", fields["holder_name"])
    fields["school"] = unicodedata.normalize("NFD", fields["school"]) + "  "
    reordered = dict(reversed(list(fields.items())))
    assert fields["holder_name"] != nfc.holder_name  # really a different code point sequence
    assert canonical_payload(reordered) == canonical_payload(nfc)
    assert CertificateData.from_mapping(reordered) == nfc
    with pytest.raises(ValueError):
        CertificateData.from_mapping({**fields, "format": "xinwei.certificate/2"})


def test_signature_verifies_and_any_tampered_field_fails(sample: CertificateData) -> None:
    key = generate_signing_key()
    pub = public_key(key)
    signature = sign(canonical_payload(sample), key)
    assert verify(canonical_payload(sample), signature, pub)
    assert signature_key_id(signature) == key_id(pub)
    tampered = {
        "holder_name": "张晓雲", "school": "华南师范大学", "student_number": "10212345679",
        "course_title": "心理疗法MOOC", "score": 93, "serial": "XW-2026-000124",
        "issued_on": dt.date(2026, 11, 30), "verify_url": sample.verify_url + "x",
        "issuers": ISSUERS[:2], "version": 2, "kind": "paper",
    }
    assert set(tampered) == {f.name for f in sample.__dataclass_fields__.values()}
    for field, value in tampered.items():
        changed = canonical_payload(sample.replace(**{field: value}))
        assert not verify(changed, signature, pub), field


def test_signature_rejects_wrong_key_and_malformed_signatures(sample: CertificateData) -> None:
    key, other = generate_signing_key(), generate_signing_key()
    payload = canonical_payload(sample)
    signature = sign(payload, key)
    assert not verify(payload, signature, public_key(other))
    assert not verify(payload, sign(payload, other), public_key(key))
    kid, sig = signature.split(".")
    forged_kid = key_id(public_key(other)) + "." + sig
    for bad in ("", ".", kid, kid + ".", signature + "=", signature + "A", signature[:-1],
                signature.replace(".", ":"), forged_kid, "é" * 95, None, 42):
        assert not verify(payload, bad, public_key(key)), bad  # type: ignore[arg-type]
    # The last base64 character carries 2 unused bits: another spelling of the same bytes.
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(sig[-1])
    respelled = kid + "." + sig[:-1] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last ^ 1]
    assert not verify(payload, respelled, public_key(key))


def test_signing_is_deterministic_ed25519(sample: CertificateData) -> None:
    key = bytes(range(32))
    payload = canonical_payload(sample)
    assert sign(payload, key) == sign(payload, key)
    assert re.fullmatch(r"[A-Za-z0-9_-]{8}\.[A-Za-z0-9_-]{86}", sign(payload, key))


# --- serials, tokens, validation ----------------------------------------------------------------

def test_serial_round_trip() -> None:
    assert format_serial(2026, 123) == "XW-2026-000123"
    for year, number in ((2026, 1), (2026, 999_999), (2031, 42)):
        assert parse_serial(format_serial(year, number)) == (year, number)


@pytest.mark.parametrize("serial", [
    "XW-2026-12345", "XW-2026-0001234", "xw-2026-000123", "XW-2026-000000", "XW-1999-000001",
    "XW-２０２６-000123", " XW-2026-000123", "XW-2026-000123\n", "XW 2026 000123", "XX-2026-000123",
    "XW-2026-00012a", "", "XW--2026-000123",
])
def test_malformed_serials_are_rejected(serial: str) -> None:
    with pytest.raises(ValueError):
        parse_serial(serial)


@pytest.mark.parametrize("year, number", [(2026, 0), (2026, 1_000_000), (1999, 1), (2026, True), (2026, -1)])
def test_format_serial_rejects_out_of_range(year: int, number: int) -> None:
    with pytest.raises(ValueError):
        format_serial(year, number)


def test_verify_token_is_unguessable_and_url_safe() -> None:
    tokens = {new_verify_token() for _ in range(1000)}
    assert len(tokens) == 1000
    for token in tokens:
        assert re.fullmatch(r"[A-Za-z0-9_-]{32}", token)  # 24 random bytes = 192 bits


@pytest.mark.parametrize("changes", [
    {"score": True}, {"score": 101}, {"score": -1}, {"score": 92.0}, {"version": 0},
    {"issued_on": dt.datetime(2026, 11, 29, 8, 0)}, {"kind": "digital"}, {"serial": "XW-26-1"},
    {"holder_name": "张三\u202e"}, {"holder_name": "张\x00三"}, {"holder_name": "   "},
    {"holder_name": "张" * 65}, {"verify_url": "javascript:alert(1)"},
    {"verify_url": "https://x.cn/c/a b"}, {"issuers": ()}, {"issuers": "毫末"},
])
def test_invalid_data_is_refused(changes: dict) -> None:
    with pytest.raises((ValueError, TypeError)):
        make_data(**changes)


# --- the PDF ------------------------------------------------------------------------------------

def test_pdf_is_one_a4_landscape_page(sample_pdf: bytes) -> None:
    assert sample_pdf.startswith(b"%PDF-1.4") and sample_pdf.rstrip().endswith(b"%%EOF")
    doc = pypdfium2.PdfDocument(sample_pdf)
    try:
        assert len(doc) == 1
        width, height = doc[0].get_size()
        assert (round(width, 2), round(height, 2)) == (841.89, 595.28)  # A4 = 297 x 210 mm
    finally:
        doc.close()


def test_font_is_wenquanyi_truetype_embedded(sample_pdf: bytes) -> None:
    # TrueType outlines embedded as FontFile2; no CFF (FontFile3) and no non-embedded CID font.
    assert b"/FontFile2" in sample_pdf
    assert b"/FontFile3" not in sample_pdf and b"STSong" not in sample_pdf
    doc = pypdfium2.PdfDocument(sample_pdf)
    try:
        fonts = set()
        for obj in doc[0].get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_TEXT,)):
            font = pdfium_c.FPDFTextObj_GetFont(obj.raw)
            buf = ctypes.create_string_buffer(256)
            size = pdfium_c.FPDFFont_GetBaseFontName(font, buf, len(buf))
            fonts.add((buf.raw[: size - 1].decode(), bool(pdfium_c.FPDFFont_GetIsEmbedded(font))))
    finally:
        doc.close()
    assert fonts, "no text objects on the page"
    for name, embedded in fonts:
        assert name == "WenQuanYiZenHei-0", name  # pdfium drops the subset tag
        assert embedded, name
    assert re.search(rb"/BaseFont /[A-Z]{6}\+WenQuanYiZenHei-0 ", sample_pdf)


def test_text_extracts_correctly(sample: CertificateData, sample_pdf: bytes) -> None:
    text = page_text(sample_pdf)
    for field in ("心理委员培训合格证书", "兹证明", sample.holder_name, sample.school,
                  sample.student_number, sample.serial, "2026年11月29日", "扫码验证证书真伪",
                  sample.verify_url, *sample.issuers):
        assert field in text, field
    body = flat(text)
    assert "完成「心理委员MOOC」全部专题的学习与测试，总成绩92分，经考核合格，特发此证。" in body
    assert "第2版" not in body


def test_correction_prints_its_version() -> None:
    text = page_text(render_pdf(make_data(version=2)))
    assert "XW-2026-000123（第 2 版）" in text


def test_qr_decodes_to_verify_url_on_pdf_and_png(sample: CertificateData, sample_pdf: bytes,
                                                 sample_png: bytes, tmp_path: Path) -> None:
    png = tmp_path / "certificate.png"
    png.write_bytes(sample_png)
    assert decode_qr(png) == [sample.verify_url]
    # The PNG as a phone shows the whole page (about 900 px across): long-press 识别图中二维码.
    image = Image.open(png).convert("RGB")
    image.resize((900, round(900 * image.height / image.width)), Image.LANCZOS).save(tmp_path / "phone.png")
    assert decode_qr(tmp_path / "phone.png") == [sample.verify_url]
    # The PDF itself, rasterised as a phone screen shows a whole page, and as a print.
    for dpi in (96, 300):
        assert decode_qr(rasterise(sample_pdf, dpi, tmp_path / f"page-{dpi}.png")) == [sample.verify_url], dpi


def test_pdf_metadata_names_the_certificate(sample: CertificateData, sample_pdf: bytes) -> None:
    doc = pypdfium2.PdfDocument(sample_pdf)
    try:
        meta = doc.get_metadata_dict()
    finally:
        doc.close()
    assert meta["Title"] == "心理委员培训合格证书 XW-2026-000123"
    assert meta["Author"] == ISSUERS[0]
    assert meta["CreationDate"].startswith("D:20261129")


def test_qr_links_in_pdf_viewers(sample: CertificateData, sample_pdf: bytes) -> None:
    assert f"/URI ({sample.verify_url})".encode() in sample_pdf


def test_png_is_album_sized_with_the_design(sample_png: bytes) -> None:
    image = Image.open(io.BytesIO(sample_png))
    assert image.format == "PNG"
    assert image.size == (1754, 1241)  # A4 landscape at 150 dpi
    rgb = image.convert("RGB")
    r, g, b = rgb.getpixel((round(16 * 150 / 72), image.height // 2))  # the outer red rule
    assert r > 120 and g < 60 and b < 60, (r, g, b)
    assert len(sample_png) < 400_000


def test_long_names_shrink_and_stay_inside_the_frame() -> None:
    name = "阿卜杜热合曼·艾合买提江·买买提明·阿不都热西提·Christopher"  # 38 characters
    data = make_data(holder_name=name, school="新疆维吾尔自治区某某职业技术学院（南校区）继续教育学院",
                     course_title="心理疗法MOOC：认知行为疗法、正念与接纳承诺疗法在高校朋辈心理辅导中的应用与实践（第二版）",
                     student_number="ABCDEFGHIJ-1234567890-XYZ")
    pdf = render_pdf(data)
    save_artifact("certificate-long-name.pdf", pdf)
    left, _, right, top = text_box(pdf, name)
    assert right - left <= BODY_WIDTH + 1
    short = text_box(render_pdf(make_data()), "张晓雯")
    assert top - text_box(pdf, name)[1] < short[3] - short[1]  # the type really shrank
    doc = pypdfium2.PdfDocument(pdf)
    try:
        textpage = doc[0].get_textpage()
        for i in range(textpage.count_chars()):
            left, b, r, t = textpage.get_charbox(i)
            if (left, b, r, t) == (0, 0, 0, 0):  # generated line breaks have no box
                continue
            assert INNER_FRAME < left and r < PAGE_W - INNER_FRAME, (i, left, r)
            assert INNER_FRAME < b and t < PAGE_H - INNER_FRAME, (i, b, t)
        text = textpage.get_text_range()
    finally:
        doc.close()
    assert name in text and data.school in text and data.student_number in text
    assert data.course_title in flat(text)


def test_extreme_name_is_condensed_not_clipped() -> None:
    name = "Wolfeschlegelsteinhausenbergerdorff " * 1 + "Hubert Blaine Wolfeschlegelstein"  # 64 chars
    pdf = render_pdf(make_data(holder_name=name[:64]))
    left, _, right, _ = text_box(pdf, name[:64])
    assert right - left <= BODY_WIDTH + 1


def test_script_in_a_name_is_literal_text() -> None:
    data = make_data(holder_name="<script>alert(1)</script>", school="a) Tj ET BT (x \\")
    pdf = render_pdf(data)
    text = page_text(pdf)
    assert "<script>alert(1)</script>" in text
    assert "a) Tj ET BT (x \\" in text
    # Nothing that a viewer would run: look at the objects, not inside the deflated streams.
    objects = re.sub(rb"stream\r?\n.*?endstream", b"", pdf, flags=re.S)
    active = re.search(rb"/(JavaScript|JS|OpenAction|AA|Launch|SubmitForm|EmbeddedFile)(?![\w+#-])", objects)
    assert active is None, active


def test_a_character_the_font_lacks_is_refused() -> None:
    with pytest.raises(MissingGlyphsError) as error:
        render_pdf(make_data(holder_name="𠮷野家"))  # U+20BB7, CJK Extension B
    assert error.value.chars == "𠮷"


def test_identical_data_renders_identical_bytes(sample: CertificateData, sample_pdf: bytes) -> None:
    assert render_pdf(sample) == sample_pdf
    assert render_pdf(make_data(student_number="10212345679")) != sample_pdf


def test_identical_bytes_in_another_process(sample: CertificateData, sample_pdf: bytes) -> None:
    # Re-rendering later, elsewhere, must not change an issued certificate (hash seed included).
    code = ("import json,sys,hashlib; from certs import CertificateData, render_pdf; "
            "d=CertificateData.from_mapping(json.loads(sys.stdin.read())); "
            "print(hashlib.sha256(render_pdf(d)).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], input=canonical_payload(sample).decode(),
                         capture_output=True, text=True, cwd=ROOT, timeout=60, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "12345", "SOURCE_DATE_EPOCH": "0"})
    assert out.stdout.strip() == hashlib.sha256(sample_pdf).hexdigest()


def test_rendering_from_many_threads(sample_pdf: bytes) -> None:
    datas = [make_data(serial=format_serial(2026, n), holder_name=f"学生{n}") for n in range(1, 9)]
    expected = [render_pdf(d) for d in datas]
    results: dict[int, bytes] = {}
    pngs: list[bytes] = []

    def work(i: int) -> None:
        results[i] = render_pdf(datas[i])
        pngs.append(render_png(results[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(datas))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(len(datas))] == expected
    assert len(pngs) == len(datas)
