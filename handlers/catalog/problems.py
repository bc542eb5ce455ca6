"""Catalog file problems: where each one is (topic, question, field), its Chinese message, and its line."""
from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field, replace
from typing import Any

# What staff call each key of a catalog file; the message names both, so the key can be found.
FIELD_NAMES: dict[str, dict[str, str]] = {
    "course": {"code": "课程编号", "title": "课程名称", "description": "课程简介", "pass_mark": "及格分",
               "topic_pass_percent": "专题测试及格百分比", "on_topic_failed": "专题测试未通过时的做法",
               "on_course_failed": "总分不及格时的做法", "watch_threshold": "视频须看完的比例",
               "max_playback_rate": "最高播放倍速", "review_on_fail": "测试未通过时显示的内容",
               "review_answers": "何时显示正确答案和解析", "order": "课程排序"},
    "topic": {"code": "专题编号", "title": "专题标题", "summary": "专题简介", "video": "视频",
              "questions": "题目", "test_questions": "每次测试抽取的题数"},
    "video": {"url": "视频地址", "seconds": "视频时长"},
    "question": {"code": "题目编号", "kind": "题型", "points": "分值", "text": "题干", "explanation": "答案解析",
                 "options": "选项", "answer": "答案"},
}
TYPE_NAMES = {str: "文字（用英文双引号括起）", int: "整数", (int, float): "数字"}


@dataclass(frozen=True)
class Place:
    """Where in the catalog a problem is; topic and question numbers are 1-based, as staff count."""

    table: str = "file"  # file | course | topic | video | question
    topic: int | None = None
    topic_code: str | None = None
    question: int | None = None
    question_code: str | None = None

    @staticmethod
    def of_topic(number: int, code: Any = None) -> Place:
        return Place("topic", number, code if isinstance(code, str) and code.strip() else None)

    def video(self) -> Place:
        return replace(self, table="video")

    def of_question(self, number: int, code: Any = None) -> Place:
        return replace(self, table="question", question=number,
                       question_code=code if isinstance(code, str) and code.strip() else None)

    def describe(self) -> str:
        if self.table == "file":
            return ""
        if self.table == "course":
            return "课程设置（[course]）"
        text = f"专题 {self.topic}" + (f"（code={_short(self.topic_code, 32)}）" if self.topic_code else "")
        if self.table == "video":
            return text + "的视频（[topics.video]）"
        if self.table == "question":
            text += f"的第 {self.question} 题"
            if self.question_code:
                text += f"（code={_short(self.question_code, 32)}）"
        return text

    def name(self, key: str) -> str:
        """A key as staff read it: 及格分（pass_mark）."""
        label = FIELD_NAMES.get(self.table, {}).get(key)
        return f"{label}（{key}）" if label else key


@dataclass(frozen=True)
class Issue:
    """A problem the validator found, before its line is known."""

    place: Place
    key: str | None  # the key it is about, when there is one (its line is the problem's line)
    detail: str

    @property
    def message(self) -> str:
        where = self.place.describe()
        return f"{where}：{self.detail}" if where else self.detail


@dataclass(frozen=True)
class Problem:
    """One problem of a catalog file, as shown to staff and printed by `flask content check`."""

    line: int | None  # 1-based; None when the problem is about the file as a whole
    message: str

    def __str__(self) -> str:
        return f"第 {self.line} 行：{self.message}" if self.line else self.message


def shown(value: Any, limit: int = 40) -> str:
    """A value as it is written in the file (true, 120, "ftp://…"), shortened."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + _short(value, limit) + '"'
    if isinstance(value, dict):
        return "一个表"
    return _short(json.dumps(value, ensure_ascii=False, default=str), limit)


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


# --- TOML syntax errors ---------------------------------------------------------------------

_TOML_AT = re.compile(r"^(.*) \(at (?:line (\d+), column (\d+)|end of document)\)$", re.S)
# tomllib's reasons (Python 3.11–3.13 wording), in staff's words.
_TOML_REASONS: list[tuple[re.Pattern[str], str]] = [(re.compile(p), m) for p, m in [
    (r"^Invalid statement$", "这一行不是合法的 TOML 语句（应为 键 = 值，或 [表名]）"),
    (r"^Expected newline or end of document after a statement$", "一条语句之后多了内容，每条语句须单独一行"),
    (r"^Expected '=' after a key in a key/value pair$", "键名之后缺少等号 =（键名含中文或空格时须加引号）"),
    (r"^Invalid initial character for a key part$", "键名的开头不合法（键名用英文字母、数字、- 和 _）"),
    (r"^Invalid value$", "值不合法：文字须用英文双引号 \" 括起（不能用中文引号“ ”），数字和 true/false 不加引号"),
    (r"^Unterminated string$", "字符串缺少结尾的英文双引号 \""),
    (r"^Unclosed array$", "数组缺少结尾的 ]，或数组元素之间缺少逗号"),
    (r"^Unclosed inline table$", "内联表 { … } 缺少结尾的 }，或键值之间缺少逗号"),
    (r"^Expected '\]' at the end of a table declaration$", "表头缺少结尾的 ]"),
    (r"^Expected '\]\]' at the end of an array declaration$", "表头缺少结尾的 ]]"),
    (r"^Cannot declare (.+) twice$", "表 [{0}] 重复声明"),
    (r"^Cannot overwrite a value$", "同一个键重复赋值"),
    (r"^Cannot mutate immutable namespace (.+)$", "{0} 已经写完，不能再添加或修改"),
    (r"^Cannot redefine namespace (.+)$", "{0} 不能重新定义"),
    (r"^Duplicate inline table key '(.+)'$", "内联表中的键 {0} 重复"),
    (r"^Unescaped '\\' in a string$", "字符串中的反斜杠 \\ 须写成 \\\\"),
    (r"^Invalid hex value$", "转义序列中的十六进制数不合法"),
    (r"^Escaped character is not a Unicode scalar value$", "转义的字符不是合法的 Unicode 字符"),
    (r"^Illegal character '\\n'$", "字符串缺少结尾的英文双引号 \"（一行内的文字须在本行结束）"),
    (r"^Illegal character '(.+)'$", "字符串中有不允许的控制字符 {0}"),
    (r"^Found invalid character '(.+)'$", "出现了不允许的字符 {0}"),
    (r"^Expected '(.+)'$", "缺少结尾的 {0}"),
    (r"^Invalid date or datetime$", "日期或时间格式不合法"),
]]


def _key_name(text: str) -> str:
    # tomllib names a table key as a tuple: ('topics', 'video') is topics.video.
    parts = re.findall(r"'([^']*)'", text) if text.startswith("(") else []
    return ".".join(parts) if parts else text


def toml_problem(error: tomllib.TOMLDecodeError, text: str) -> Problem:
    """A TOML syntax error in Chinese, with its line and column (the end of the file when it ran out)."""
    match = _TOML_AT.match(str(error))
    reason = match.group(1) if match else str(error)
    for pattern, chinese in _TOML_REASONS:
        found = pattern.match(reason)
        if found:
            reason = chinese.format(*(_key_name(g) for g in found.groups()))
            break
    else:
        reason = f"无法解析（{reason}）"
    if match and match.group(2):
        line, column = int(match.group(2)), int(match.group(3))
        return Problem(line, f"TOML 格式错误，第 {line} 行第 {column} 列：{reason}")
    last = len(text.splitlines()) or None
    return Problem(last, f"TOML 格式错误，文件末尾：{reason}")


# --- Lines --------------------------------------------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\"-]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


@dataclass
class _Block:
    line: int
    keys: dict[str, int] = field(default_factory=dict)


@dataclass
class _Topic(_Block):
    video: _Block | None = None
    questions: list[_Block] = field(default_factory=list)


def _outline(text: str) -> tuple[_Block | None, list[_Topic]]:
    """Where each table of the catalog starts and where each of its keys is, from the text itself
    (tomllib keeps no positions). Only headers and `key =` at a line start count, so the lines of a
    multi-line options array never look like keys."""
    course: _Block | None = None
    topics: list[_Topic] = []
    current: _Block | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        header = _HEADER.match(raw)
        if header:
            name = header.group(2).replace('"', "")
            current = None
            if name == "course":
                current = course = _Block(number)
            elif name == "topics":
                topic = _Topic(number)
                topics.append(topic)
                current = topic
            elif name == "topics.video" and topics:
                current = topics[-1].video = _Block(number)
            elif name == "topics.questions" and topics:
                current = _Block(number)
                topics[-1].questions.append(current)
            continue
        key = _KEY.match(raw)
        if key and current is not None and key.group(1) not in current.keys:
            current.keys[key.group(1)] = number
    return course, topics


def locate(text: str, issues: list[Issue]) -> list[Problem]:
    """Each issue as a problem on the line it is about: its key's line, else its table's header."""
    course, topics = _outline(text)
    return [Problem(_line_of(issue, course, topics), issue.message) for issue in issues]


def _line_of(issue: Issue, course: _Block | None, topics: list[_Topic]) -> int | None:
    place = issue.place
    if place.table == "course":
        return _key_line(course, issue.key)
    if place.table == "file" or place.topic is None or not 0 < place.topic <= len(topics):
        return None
    topic = topics[place.topic - 1]
    if place.table == "video":
        # A video written inline (video = { … }) has no table of its own: its line is the key's.
        return _key_line(topic.video, issue.key) if topic.video else _key_line(topic, "video")
    if place.table == "question":
        if place.question is not None and 0 < place.question <= len(topic.questions):
            return _key_line(topic.questions[place.question - 1], issue.key)
        return _key_line(topic, "questions")
    return _key_line(topic, issue.key)


def _key_line(block: _Block | None, key: str | None) -> int | None:
    if block is None:
        return None
    return block.keys.get(key, block.line) if key else block.line
