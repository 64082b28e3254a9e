"""Code tables of the SAM_V ID-card protocol (GA/T 467) and the card's text block."""

from __future__ import annotations

from typing import Final

# GB 3304 nation codes as stored on the card (two ASCII digits). 46 is 德昂: the
# widely copied hev-dbus table misspells it 德昴.
NATIONS: Final[dict[str, str]] = {
    "01": "汉",
    "02": "蒙古",
    "03": "回",
    "04": "藏",
    "05": "维吾尔",
    "06": "苗",
    "07": "彝",
    "08": "壮",
    "09": "布依",
    "10": "朝鲜",
    "11": "满",
    "12": "侗",
    "13": "瑶",
    "14": "白",
    "15": "土家",
    "16": "哈尼",
    "17": "哈萨克",
    "18": "傣",
    "19": "黎",
    "20": "傈僳",
    "21": "佤",
    "22": "畲",
    "23": "高山",
    "24": "拉祜",
    "25": "水",
    "26": "东乡",
    "27": "纳西",
    "28": "景颇",
    "29": "柯尔克孜",
    "30": "土",
    "31": "达斡尔",
    "32": "仫佬",
    "33": "羌",
    "34": "布朗",
    "35": "撒拉",
    "36": "毛南",
    "37": "仡佬",
    "38": "锡伯",
    "39": "阿昌",
    "40": "普米",
    "41": "塔吉克",
    "42": "怒",
    "43": "乌孜别克",
    "44": "俄罗斯",
    "45": "鄂温克",
    "46": "德昂",
    "47": "保安",
    "48": "裕固",
    "49": "京",
    "50": "塔塔尔",
    "51": "独龙",
    "52": "鄂伦春",
    "53": "赫哲",
    "54": "门巴",
    "55": "珞巴",
    "56": "基诺",
    "97": "其他",
    "98": "外国血统",
}
NATION_CODES: Final[dict[str, str]] = {name: code for code, name in NATIONS.items()}

# SW3 status byte of a response (SAMV_ERRCODE_*).
STATUS_TEXT: Final[dict[int, str]] = {
    0x90: "OK",
    0x9F: "find OK",
    0x91: "item has no content",
    0x10: "checksum error",
    0x11: "length error",
    0x21: "command error",
    0x23: "unauthorised operation",
    0x24: "unknown error",
    0x31: "card failed to authenticate SAM",
    0x32: "SAM failed to authenticate card",
    0x33: "info verification error",
    0x40: "unknown card type",
    0x41: "read failed",
    0x47: "random number failed",
    0x60: "SAM self-test failed",
    0x66: "SAM not authorised",
    0x80: "find failed (no card)",
    0x81: "select failed",
}
# 0x91 is a successful answer with nothing in it (e.g. no appended address), not a fault.
OK_STATUSES: Final = frozenset({0x90, 0x9F, 0x91})

# Fields of the 256-byte UCS-2LE text block: (offset, length in bytes).
TEXT_BLOCK_SIZE: Final = 256
TEXT_FIELDS: Final[dict[str, tuple[int, int]]] = {
    "name": (0, 30),
    "sex": (30, 2),
    "nation": (32, 4),
    "birth_date": (36, 16),
    "address": (52, 70),
    "id_number": (122, 36),
    "authority": (158, 30),
    "valid_from": (188, 16),
    "valid_to": (204, 16),
    "reserved": (220, 36),
}

# CMD 0x60 PARA 0..4, in the order the readers probe them.
BAUD_RATES: Final = (115200, 57600, 38400, 19200, 9600)
