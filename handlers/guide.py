"""What the account says about itself: the platform, the how-to guide, the FAQ, and the links into the H5 pages."""
from __future__ import annotations

from sqlalchemy.orm import Session

from handlers.messages import Handler, Inbound, NewsReply, Reply, TextReply, read_only

ABOUT = (
    "毫末高校心理委员工作平台\n"
    "心理委员MOOC培训认证由中国心理学会心理学标准与服务研究委员会、高校心理委员研究协作组共同打造，"
    "由国内高校一线心理中心老师录制。所有在校学生均可免费学习，自行选择是否认证并获取证书。"
)

GUIDE = (
    "操作指南\n"
    "1. 点击「毫末平台」→「心委培训」，选择「心理委员MOOC」或「心理疗法MOOC」。\n"
    "2. 先完善个人信息并完成身份认证（信息将印在证书上，请仔细核对）。\n"
    "3. 按顺序观看 14 个专题视频，每个专题看完后完成该专题测试。\n"
    "4. 总分（满分 100）达到 85 分即认证通过，可领取电子版、纸质版或两种证书。"
)

FAQ = (
    "常见问题\n"
    "· 证书在哪里看？「我的」→「显示证书」。\n"
    "· 学校统一付费？完成学习和考试即可获得电子版证书。\n"
    "· 纸质证书：20 元，邮寄费用自理，寄到所在学校。\n"
    "· 支付后想改证书类型或信息填错？在这里留言，工作人员处理。\n"
    "· 总分不满 85 分？需要将 14 个专题重新学习一遍。\n"
    "· 视频看到一半退出？下次从上次看到的位置继续。"
)

CONTACT_STAFF = "请直接在对话框里留言（写明姓名、学校、学号和问题），工作人员会在这里回复你。"

# Menu keys that open an H5 page: (path under the public URL, article title, description).
H5_ENTRIES = {
    "TRAINING": (
        "/h5/",
        "心委培训",
        "心理委员MOOC · 心理疗法MOOC：完善个人信息后按顺序学习每门课的专题，总分 85 分即可领取证书。",
    ),
    "MY_PROGRESS": ("/h5/progress", "我的学习进度", "查看每个专题的完成情况和当前得分。"),
    "MY_PROFILE": ("/h5/profile", "个人信息", "查看或完善你的身份认证信息（将印在证书上）。"),
}


def h5_entry(public_url: str, key: str) -> Handler:
    """A menu key answered with one article linking into the H5 pages (WeChat shows one article)."""
    path, title, description = H5_ENTRIES[key]
    url = public_url.rstrip("/") + path

    @read_only
    def entry(session: Session, inbound: Inbound) -> Reply:
        return NewsReply(title=title, description=description, url=url)

    entry.__name__ = entry.__qualname__ = f"h5_entry_{key.lower()}"
    return entry


def _answer(text: str, name: str) -> Handler:
    @read_only
    def answer(session: Session, inbound: Inbound) -> Reply:
        return TextReply(text)

    answer.__name__ = answer.__qualname__ = name
    return answer


about = _answer(ABOUT, "about")
guide = _answer(GUIDE, "guide")
def faq(public_url: str) -> Handler:
    """The FAQ, ending with the privacy notice's link (the notice is promised from the menu's FAQ)."""
    link = public_url.rstrip("/") + "/h5/privacy"
    return _answer(FAQ + f'\n· 个人信息如何保存和使用？请看<a href="{link}">《隐私政策》</a>；'
                   "在「我的数据」中可以下载副本或注销。", "faq")
contact_staff = _answer(CONTACT_STAFF, "contact_staff")
