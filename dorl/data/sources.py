"""The public raw files of each dataset: repository, pinned commit, path and checksums.

Every file is identified by its git blob id at the pinned commit (sha1 of b"blob <size>\\0" + content,
what `git hash-object` prints), which is what `download.py` verifies. Sizes and sha256 values were
recorded by Hugging Face's dataset scripts (huggingface/datasets `dataset_infos.json`); they are kept as
metadata, checked when present, and the sha256 of every file used is recorded in the data manifest.

Files are fetched from `{base_url}/{repo}/{commit}/{folder}/{rel}`; `base_url` defaults to
raw.githubusercontent.com and is overridden by `data.base_url` or $DORL_DATA_BASE_URL (tests point it at a
local HTTP server). A `--source DIR` copy has the same layout: `DIR/{rel}` (the dataset folder) or
`DIR/{folder}/{rel}` (a clone of the repository).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_BASE_URL = "https://raw.githubusercontent.com"
BASE_URL_ENV = "DORL_DATA_BASE_URL"


@dataclass(frozen=True)
class RawFile:
    rel: str  # path under the dataset folder, e.g. "train/dialogues_001.json"
    blob: str  # git blob id at the pinned commit
    size: int | None = None  # bytes, where known
    sha256: str | None = None  # where known


@dataclass(frozen=True)
class Source:
    dataset: str
    repo: str
    commit: str
    folder: str  # the dataset's folder inside the repository
    files: tuple[RawFile, ...]
    license: str

    def url(self, f: RawFile, base_url: str | None = None) -> str:
        return f"{resolve_base_url(base_url)}/{self.repo}/{self.commit}/{self.folder}/{f.rel}"

    def file(self, rel: str) -> RawFile:
        for f in self.files:
            if f.rel == rel:
                return f
        raise KeyError(rel)


def resolve_base_url(base_url: str | None = None) -> str:
    """Config value, else $DORL_DATA_BASE_URL, else raw.githubusercontent.com."""
    return (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")


# ABCD: one gzipped JSON with the splits as keys (train / dev / test). Only `original` is used.
ABCD = Source(
    dataset="abcd",
    repo="asappresearch/abcd",
    commit="6b8700ce67c6b37b062dd7a60abc76d7ef832a97",
    folder="data",
    files=(RawFile("abcd_v1.1.json.gz", "c6fecb3aed30309ca3456ed93a0a19c98cade1a4"),),
    license="MIT",
)

# MultiWOZ 2.2: the split is the folder. dialog_acts.json (60 MB) and schema.json are not needed for text.
MULTIWOZ22 = Source(
    dataset="multiwoz22",
    repo="budzianowski/multiwoz",
    commit="fe0c8e65cfcd8462bd33c86e35f21addc84ca82b",
    folder="data/MultiWOZ_2.2",
    files=(
        RawFile(
            "train/dialogues_001.json",
            "1ab08d377750e83493095b0eb1249df81a99ba21",
            10678768,
            "895a8109bf01fa5ecf15ccdbd2dfe1628bd923f6b61dcd2e26b10ee5076a1596",
        ),
        RawFile(
            "train/dialogues_002.json",
            "d182eae43341a44ebe3807ed61e829d73dc34a84",
            10779713,
            "2f3ea771d4e01cb2780357738cff7f7496b87d34c221cc240df74501312438d3",
        ),
        RawFile(
            "train/dialogues_003.json",
            "2544e4c90a5eeef4c290fe2cf0c4c4d70c4f69ff",
            9980098,
            "da24961d28486be2d8462ee4d86a809db819d588ba90ae1a783383d95eb85daa",
        ),
        RawFile(
            "train/dialogues_004.json",
            "ec487da741ebc423770ae2d09c9cb5c70b81bd1f",
            10267341,
            "30c1172db1071c853b16215d1946de908d68d2b6ff8da7801de307000a179106",
        ),
        RawFile(
            "train/dialogues_005.json",
            "34d733cbc334bb39c79e6f06652b1d1aa997307e",
            10518980,
            "eaf58716df5de99524b3e0e7edf477b74749512788a6a51f53f2bdd76768d39a",
        ),
        RawFile(
            "train/dialogues_006.json",
            "8d390b5dac386dd87c927eafaec63699fde304ea",
            10567400,
            "8e75fd543b1964bc5e7118085d977f479c98fcdf6d606b971f67a45fb1745c83",
        ),
        RawFile(
            "train/dialogues_007.json",
            "ee6a677c78d8416779840e2dd306d668851061b6",
            10362425,
            "02323f8298439d713c6d7d226f4bd7ec246ec993ee11911b54f98cb8a598f206",
        ),
        RawFile(
            "train/dialogues_008.json",
            "cf849daab0a6f0caa3f543a6f6d171e443a80dce",
            10207271,
            "1129fbed480352ae304f0ae5b4915c194e9619c43f1577ccb0d450e10d24ea98",
        ),
        RawFile(
            "train/dialogues_009.json",
            "ee088d84d2c274c6f3fb3e119346bfd3321c986e",
            10168917,
            "87d9e43b1ba51a4a4688703da79d3a09b14d8013570545da24c597daa18e2f45",
        ),
        RawFile(
            "train/dialogues_010.json",
            "8b6252a34be01fa9500511dc5cc30121cb1ac7f7",
            10539061,
            "e7ad0d5da2909b08197295e45fe4695b9dc2f67d458374b2aab8db5094e97b26",
        ),
        RawFile(
            "train/dialogues_011.json",
            "c24eb2c071e3d2ab3f12f742eb591a2526d0c19f",
            10326640,
            "82e2d2900a037b866a01d05974734dd419e89b329fe29ef93b35eea96d27feb8",
        ),
        RawFile(
            "train/dialogues_012.json",
            "89937591b044fa964a0430480cd9f91dfc681a6a",
            10584880,
            "b6bf292325db67682dd7b6fafbf1051cc2262e92f7c37cab213e975888594bb2",
        ),
        RawFile(
            "train/dialogues_013.json",
            "c39aa0c69fda70278ff37de94f2189f2bb3f9e69",
            10471034,
            "c33fe4b3952c016e1e1645f472a7097f93dfb476a19940fd9386865ef9adf685",
        ),
        RawFile(
            "train/dialogues_014.json",
            "d0399d022e916ae79b40df7adb92cb17fe97ad57",
            10260484,
            "ce33dbbf93a40d0dcc671a9d6a2ed1f987914f5b5f05f6df493a5b342efda954",
        ),
        RawFile(
            "train/dialogues_015.json",
            "e1db3d9ab1475ffffd725d1e8326f7b1df2adf38",
            10423185,
            "d895c0439bc2ad89ef1689896e3be630eadebc33dae77b42a426fd16a271718e",
        ),
        RawFile(
            "train/dialogues_016.json",
            "079e9f5881429c398626c8615cb979b67c46329d",
            10218682,
            "3e6bc0bca4262022ccbce0d5ce3150e536e7d21aeb9fbdef9e83cced4dfd124b",
        ),
        RawFile(
            "train/dialogues_017.json",
            "2cdad94fbcbf80c21e67cb57d40eece195fe3181",
            5020445,
            "b6ab2cd9b6e8983364526845b7cbec1749338209bf7ac2313c25e1e2226ebab5",
        ),
        RawFile(
            "dev/dialogues_001.json",
            "994fec69745c3dfd469835e90bf5cba2d1c4af47",
            11771811,
            "e7ddb563e4da5766ea820cc826dead77e7ca219c19b761e218d62d9c999a252e",
        ),
        RawFile(
            "dev/dialogues_002.json",
            "90e368c50db6bb8d6fbec2fa396e71396ca5a3f7",
            10708830,
            "ede6a2c17fd6c5846214b8cabc1ef8f7cc8be01cfbacaa162bcafec9e87724e9",
        ),
        RawFile(
            "test/dialogues_001.json",
            "fd420005cc9dc259892f541b001d9d48608bd38d",
            11781808,
            "d6f43876cf130fdb2dfa8f96bc056b0995354137f02122e004925d01264ed386",
        ),
        RawFile(
            "test/dialogues_002.json",
            "8ce97bc17acc3d1105d92d8d936520b8c93892ba",
            10771758,
            "89af95d8f596a448e733d59b31be78f1dd1632eddd99d5cb298a3fcb1ac9d185",
        ),
    ),
    license="MIT",
)

# Taskmaster-3: 20 files, no split inside; the reference shuffles them all (see splits.py).
TASKMASTER3 = Source(
    dataset="taskmaster3",
    repo="google-research-datasets/Taskmaster",
    commit="d92cb6af3005f1dc09c39e75e7daf4a04905e00b",
    folder="TM-3-2020",
    files=(
        RawFile(
            "data/data_00.json",
            "241858d11f15b3391780a7c766c31f36d92772ea",
            15832328,
            "4edf97557e1aa7f654bf97994b5eae42653ef6d4f5e50136f7664d7e5cdff7b6",
        ),
        RawFile(
            "data/data_01.json",
            "805ba58fdc161734096cef763fdfb06fd0da716a",
            15881778,
            "a4fef75ec7824bb3fb29b8afe9ed63f3354b81077bb9b6f58f2349bb60d660fc",
        ),
        RawFile(
            "data/data_02.json",
            "e3da4e95f3f1ac353fcd8b08067194020266b73d",
            15487631,
            "25cb4788c4c857740152612397b0e687dfeade14c7dbfeed501a53290725aedf",
        ),
        RawFile(
            "data/data_03.json",
            "78951e736da85065d0431cf8cb0746599e681b30",
            15728910,
            "5e1f15544f259c804438458f34a6c7f00400e30dba7648c37a0b31886c5dd903",
        ),
        RawFile(
            "data/data_04.json",
            "bac3a49c247b24dd37d8d272acd811752e736aad",
            15602257,
            "17d8deb3bc6c3551c564cb9003a47202a835e011477b1e3c81711b083bf4064b",
        ),
        RawFile(
            "data/data_05.json",
            "118c8cbb36f86d6ba33f7758417a414142b6b3c3",
            15654421,
            "12e58018be7b42aa16968ab914d03c56af9fae9fb5feec7448e01f738c50d2fe",
        ),
        RawFile(
            "data/data_06.json",
            "a18961cdb84f787b13377dd19bc41e6412db513d",
            15590810,
            "a4e290dafc6362ca8d4d786d6e70f6339297b0414cca4fe0ec79c1d383d65673",
        ),
        RawFile(
            "data/data_07.json",
            "02f7d3f53f56acd0132679d9c7089c09c238d7b4",
            15661246,
            "becec1c0e9b88781fbb81f5d032826f85d77756cfae7c37acbca9b4b2a470fdb",
        ),
        RawFile(
            "data/data_08.json",
            "a43aa32ca46453bd286010359236e3f57e6a8766",
            15643179,
            "c2718197cedfb1ff7b830492ddbdc36c213ac98c83ba974ff0ea0eeeffdfe9b5",
        ),
        RawFile(
            "data/data_09.json",
            "0718f9de20f0149acc6f1d97c7809e692c9792ca",
            15681874,
            "a8867eb49010fa735b3c0b2f47df4cc225c79b6ca919009db857f454cccc986d",
        ),
        RawFile(
            "data/data_10.json",
            "5294b6d16be5bce1ca81db7770579a3c203ac059",
            15600102,
            "88a8ce81f2c843c7a52a1a6c016d790e6547d5a3ffdd000ca00f0676c02e077b",
        ),
        RawFile(
            "data/data_11.json",
            "533b309d58d1bd0cb634253fc094a83168078eab",
            15686138,
            "10e5d2dadb7a55b08d41605498b46320fa2df7b87c71a820df4245e9eeeba4d1",
        ),
        RawFile(
            "data/data_12.json",
            "add2766e18712e04f50ad91adc4fa720c61427d3",
            15684546,
            "be255d29439d10fc33bb222a1294da0af7ed4bdf8ede84c389d9b744e9cdf343",
        ),
        RawFile(
            "data/data_13.json",
            "06eb7f86767edebde5b93e3b42aae741e0786f8c",
            15608345,
            "a477d4668398b86bc7f68f86c20a423e81b4dbc41002a5d605dee0c6cee250b8",
        ),
        RawFile(
            "data/data_14.json",
            "7f965f1f4a0ac216893b8eeb5e7ea9f5951355e4",
            15730197,
            "92c7a0ca1fce8845610a7fdb00972750228351b2c2065e76120c328c806cc1e5",
        ),
        RawFile(
            "data/data_15.json",
            "adbba4739a40d2578a9bd09ff8be208b5e35b110",
            15666588,
            "e67e9d649d29f3edc12796cb4b1308cc7cb89f676c12e96d8fea558510b6ee18",
        ),
        RawFile(
            "data/data_16.json",
            "184309cd7c7efed8b0802b9811088567789d705a",
            15573228,
            "f0d3f22ee8b9224ea4efc57182f1620f849f3b90050cc04992319aab04e7b453",
        ),
        RawFile(
            "data/data_17.json",
            "a663041a13286f17608808bd44c13e6a0973a5ea",
            15734442,
            "15c469a030aae16a98969675b238f368436ec0a5074f3eb79458fdc81cf489d4",
        ),
        RawFile(
            "data/data_18.json",
            "af7443f873fee79b94d8f65893e9edaed17900d8",
            15697850,
            "28dfe3f65c1cd7bab8ed9da0e667ee1aec1561cf41237531f30c889cafb0997d",
        ),
        RawFile(
            "data/data_19.json",
            "183e4912dc8751362bf4a157d8e93e661cd5dfed",
            15656271,
            "7ae99d1237c25519269c3e6969ab0ecd88509828c436cbecb8a86831007c3868",
        ),
    ),
    license="CC BY 4.0",
)

SOURCES: dict[str, Source] = {s.dataset: s for s in (ABCD, MULTIWOZ22, TASKMASTER3)}
