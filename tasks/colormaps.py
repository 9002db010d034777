"""Colour paths for depth maps and their exact nearest-point inverse tables.

A *path* is a polyline in RGB (0..255 units) walked at constant parameter speed: segment i of
an n-segment path covers t in [i/n, (i+1)/n]. Depth codecs map f(depth) in [0, 1] to a point
on a path (`tasks.depth`), and decode an RGB image by projecting every pixel onto the nearest
point of the path, which is a table lookup here.

Paths:
- ``rainbow``: the Vision Banana path, the 7 edges of the RGB cube
  black-red-yellow-green-cyan-blue-magenta-white, each 1/7 of t. Every 8-bit point on it is
  one of 7 * 255 + 1 = 1786 *levels*.
- ``plasma``, ``inferno``, ``viridis``: matplotlib's 256-entry colormaps (255 segments; the
  control points are embedded below, exact to matplotlib's 6 decimals, so matplotlib is not
  needed at run time).
- ``gray``: the black-white diagonal (matplotlib ``gray``).

Tables: `nearest_table(name)` is a uint16 array of 256**3 *positions*, indexed by the 24-bit
key ``r | g << 8 | b << 16`` (the little-endian uint32 of an RGBA pixel with alpha 0), giving
the path position q of the nearest point, t = q / resolution(name). Positions are exact to
1/S of a segment (S = `segment_resolution`); for the rainbow S is a multiple of 255, so every
8-bit level decodes exactly. Two metrics decide "nearest":
- ``rgb``: Euclidean RGB distance (the default, and what the Vision Banana paper describes);
- ``ycbcr``: Euclidean in JPEG's YCbCr with the squared chroma differences weighted by 1/2,
  which trusts luma over chroma as JPEG's 4:2:0 subsampling does (fewer decode errors at
  edges of JPEG outputs; identical on clean path colours).
Ties (equidistant segments) go to the segment nearest the start of the path. Building a
table takes about 0.5 s for the rainbow (exact int32 arithmetic, `rainbow_levels`, which the
jax decoder reuses) and 4-5 s for a 255-segment colormap (octree pruning, `_polyline_table`).

Also here, shared by the decoders: `rgb_at` (t -> colour), `rgb_keys` (the table key of
every pixel, one OpenCV pass), `check_rgb` (input validation), `as_rows` / `row_blocks`
(block-wise processing that keeps temporaries in cache).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
from tqdm.auto import tqdm

NAMES = ("rainbow", "plasma", "inferno", "viridis", "gray")

# Cube corners of the Vision Banana depth path, in walking order.
_RAINBOW = np.array(
    [[0, 0, 0], [255, 0, 0], [255, 255, 0], [0, 255, 0], [0, 255, 255], [0, 0, 255],
     [255, 0, 255], [255, 255, 255]], np.float64)

# matplotlib's _cm_listed data in millionths (r g b, four colours per line), first to last.
_VIRIDIS = """
267004 4874 329415 268510 9605 335427 269944 14625 341379 271305 19942 347269
272594 25563 353093 273809 31497 358853 274952 37752 364543 276022 44167 370164
277018 50344 375715 277941 56324 381191 278791 62145 386592 279566 67836 391917
280267 73417 397163 280894 78907 402329 281446 84320 407414 281924 89666 412415
282327 94955 417331 282656 100196 422160 282910 105393 426902 283091 110553 431554
283197 115680 436115 283229 120777 440584 283187 125848 444960 283072 130895 449241
282884 135920 453427 282623 140926 457517 282290 145912 461510 281887 150881 465405
281412 155834 469201 280868 160771 472899 280255 165693 476498 279574 170599 479997
278826 175490 483397 278012 180367 486697 277134 185228 489898 276194 190074 493001
275191 194905 496005 274128 199721 498911 273006 204520 501721 271828 209303 504434
270595 214069 507052 269308 218818 509577 267968 223549 512008 266580 228262 514349
265145 232956 516599 263663 237631 518762 262138 242286 520837 260571 246922 522828
258965 251537 524736 257322 256130 526563 255645 260703 528312 253935 265254 529983
252194 269783 531579 250425 274290 533103 248629 278775 534556 246811 283237 535941
244972 287675 537260 243113 292092 538516 241237 296485 539709 239346 300855 540844
237441 305202 541921 235526 309527 542944 233603 313828 543914 231674 318106 544834
229739 322361 545706 227802 326594 546532 225863 330805 547314 223925 334994 548053
221989 339161 548752 220057 343307 549413 218130 347432 550038 216210 351535 550627
214298 355619 551184 212395 359683 551710 210503 363727 552206 208623 367752 552675
206756 371758 553117 204903 375746 553533 203063 379716 553925 201239 383670 554294
199430 387607 554642 197636 391528 554969 195860 395433 555276 194100 399323 555565
192357 403199 555836 190631 407061 556089 188923 410910 556326 187231 414746 556547
185556 418570 556753 183898 422383 556944 182256 426184 557120 180629 429975 557282
179019 433756 557430 177423 437527 557565 175841 441290 557685 174274 445044 557792
172719 448791 557885 171176 452530 557965 169646 456262 558030 168126 459988 558082
166617 463708 558119 165117 467423 558141 163625 471133 558148 162142 474838 558140
160665 478540 558115 159194 482237 558073 157729 485932 558013 156270 489624 557936
154815 493313 557840 153364 497000 557724 151918 500685 557587 150476 504369 557430
149039 508051 557250 147607 511733 557049 146180 515413 556823 144759 519093 556572
143343 522773 556295 141935 526453 555991 140536 530132 555659 139147 533812 555298
137770 537492 554906 136408 541173 554483 135066 544853 554029 133743 548535 553541
132444 552216 553018 131172 555899 552459 129933 559582 551864 128729 563265 551229
127568 566949 550556 126453 570633 549841 125394 574318 549086 124395 578002 548287
123463 581687 547445 122606 585371 546557 121831 589055 545623 121148 592739 544641
120565 596422 543611 120092 600104 542530 119738 603785 541400 119512 607464 540218
119423 611141 538982 119483 614817 537692 119699 618490 536347 120081 622161 534946
120638 625828 533488 121380 629492 531973 122312 633153 530398 123444 636809 528763
124780 640461 527068 126326 644107 525311 128087 647749 523491 130067 651384 521608
132268 655014 519661 134692 658636 517649 137339 662252 515571 140210 665859 513427
143303 669459 511215 146616 673050 508936 150148 676631 506589 153894 680203 504172
157851 683765 501686 162016 687316 499129 166383 690856 496502 170948 694384 493803
175707 697900 491033 180653 701402 488189 185783 704891 485273 191090 708366 482284
196571 711827 479221 202219 715272 476084 208030 718701 472873 214000 722114 469588
220124 725509 466226 226397 728888 462789 232815 732247 459277 239374 735588 455688
246070 738910 452024 252899 742211 448284 259857 745492 444467 266941 748751 440573
274149 751988 436601 281477 755203 432552 288921 758394 428426 296479 761561 424223
304148 764704 419943 311925 767822 415586 319809 770914 411152 327796 773980 406640
335885 777018 402049 344074 780029 397381 352360 783011 392636 360741 785964 387814
369214 788888 382914 377779 791781 377939 386433 794644 372886 395174 797475 367757
404001 800275 362552 412913 803041 357269 421908 805774 351910 430983 808473 346476
440137 811138 340967 449368 813768 335384 458674 816363 329727 468053 818921 323998
477504 821444 318195 487026 823929 312321 496615 826376 306377 506271 828786 300362
515992 831158 294279 525776 833491 288127 535621 835785 281908 545524 838039 275626
555484 840254 269281 565498 842430 262877 575563 844566 256415 585678 846661 249897
595839 848717 243329 606045 850733 236712 616293 852709 230052 626579 854645 223353
636902 856542 216620 647257 858400 209861 657642 860219 203082 668054 861999 196293
678489 863742 189503 688944 865448 182725 699415 867117 175971 709898 868751 169257
720391 870350 162603 730889 871916 156029 741388 873449 149561 751884 874951 143228
762373 876424 137064 772852 877868 131109 783315 879285 125405 793760 880678 120005
804182 882046 114965 814576 883393 110347 824940 884720 106217 835270 886029 102646
845561 887322 99702 855810 888601 97452 866013 889868 95953 876168 891125 95250
886271 892374 95374 896320 893616 96335 906311 894855 98125 916242 896091 100717
926106 897330 104071 935904 898570 108131 945636 899815 112838 955300 901065 118128
964894 902323 123941 974417 903590 130215 983868 904867 136897 993248 906157 143936
"""

_PLASMA = """
50383 29803 527975 63536 28426 533124 75353 27206 538007 86222 26125 542658
96379 25165 547103 105980 24309 551368 115124 23556 555468 123903 22878 559423
132381 22258 563250 140603 21687 566959 148607 21154 570562 156421 20651 574065
164070 20171 577478 171574 19706 580806 178950 19252 584054 186213 18803 587228
193374 18354 590330 200445 17902 593364 207435 17442 596333 214350 16973 599239
221197 16497 602083 227983 16007 604867 234715 15502 607592 241396 14979 610259
248032 14439 612868 254627 13882 615419 261183 13308 617911 267703 12716 620346
274191 12109 622722 280648 11488 625038 287076 10855 627295 293478 10213 629490
299855 9561 631624 306210 8902 633694 312543 8239 635700 318856 7576 637640
325150 6915 639512 331426 6261 641316 337683 5618 643049 343925 4991 644710
350150 4382 646298 356359 3798 647810 362553 3243 649245 368733 2724 650601
374897 2245 651876 381047 1814 653068 387183 1434 654177 393304 1114 655199
399411 859 656133 405503 678 656977 411580 577 657730 417642 564 658390
423689 646 658956 429719 831 659425 435734 1127 659797 441732 1540 660069
447714 2080 660240 453677 2755 660310 459623 3574 660277 465550 4545 660139
471457 5678 659897 477344 6980 659549 483210 8460 659095 489055 10127 658534
494877 11990 657865 500678 14055 657088 506454 16333 656202 512206 18833 655209
517933 21563 654109 523633 24532 652901 529306 27747 651586 534952 31217 650165
540570 34950 648640 546157 38954 647010 551715 43136 645277 557243 47331 643443
562738 51545 641509 568201 55778 639477 573632 60028 637349 579029 64296 635126
584391 68579 632812 589719 72878 630408 595011 77190 627917 600266 81516 625342
605485 85854 622686 610667 90204 619951 615812 94564 617140 620919 98934 614257
625987 103312 611305 631017 107699 608287 636008 112092 605205 640959 116492 602065
645872 120898 598867 650746 125309 595617 655580 129725 592317 660374 134144 588971
665129 138566 585582 669845 142992 582154 674522 147419 578688 679160 151848 575189
683758 156278 571660 688318 160709 568103 692840 165141 564522 697324 169573 560919
701769 174005 557296 706178 178437 553657 710549 182868 550004 714883 187299 546338
719181 191729 542663 723444 196158 538981 727670 200586 535293 731862 205013 531601
736019 209439 527908 740143 213864 524216 744232 218288 520524 748289 222711 516834
752312 227133 513149 756304 231555 509468 760264 235976 505794 764193 240396 502126
768090 244817 498465 771958 249237 494813 775796 253658 491171 779604 258078 487539
783383 262500 483918 787133 266922 480307 790855 271345 476706 794549 275770 473117
798216 280197 469538 801855 284626 465971 805467 289057 462415 809052 293491 458870
812612 297928 455338 816144 302368 451816 819651 306812 448306 823132 311261 444806
826588 315714 441316 830018 320172 437836 833422 324635 434366 836801 329105 430905
840155 333580 427455 843484 338062 424013 846788 342551 420579 850066 347048 417153
853319 351553 413734 856547 356066 410322 859750 360588 406917 862927 365119 403519
866078 369660 400126 869203 374212 396738 872303 378774 393355 875376 383347 389976
878423 387932 386600 881443 392529 383229 884436 397139 379860 887402 401762 376494
890340 406398 373130 893250 411048 369768 896131 415712 366407 898984 420392 363047
901807 425087 359688 904601 429797 356329 907365 434524 352970 910098 439268 349610
912800 444029 346251 915471 448807 342890 918109 453603 339529 920714 458417 336166
923287 463251 332801 925825 468103 329435 928329 472975 326067 930798 477867 322697
933232 482780 319325 935630 487712 315952 937990 492667 312575 940313 497642 309197
942598 502639 305816 944844 507658 302433 947051 512699 299049 949217 517763 295662
951344 522850 292275 953428 527960 288883 955470 533093 285490 957469 538250 282096
959424 543431 278701 961336 548636 275305 963203 553865 271909 965024 559118 268513
966798 564396 265118 968526 569700 261721 970205 575028 258325 971835 580382 254931
973416 585761 251540 974947 591165 248151 976428 596595 244767 977856 602051 241387
979233 607532 238013 980556 613039 234646 981826 618572 231287 983041 624131 227937
984199 629718 224595 985301 635330 221265 986345 640969 217948 987332 646633 214648
988260 652325 211364 989128 658043 208100 989935 663787 204859 990681 669558 201642
991365 675355 198453 991985 681179 195295 992541 687030 192170 993032 692907 189084
993456 698810 186041 993814 704741 183043 994103 710698 180097 994324 716681 177208
994474 722691 174381 994553 728728 171622 994561 734791 168938 994495 740880 166335
994355 746995 163821 994141 753137 161404 993851 759304 159092 993482 765499 156891
993033 771720 154808 992505 777967 152855 991897 784239 151042 991209 790537 149377
990439 796859 147870 989587 803205 146529 988648 809579 145357 987621 815978 144363
986509 822401 143557 985314 828846 142945 984031 835315 142528 982653 841812 142303
981190 848329 142279 979644 854866 142453 977995 861432 142808 976265 868016 143351
974443 874622 144061 972530 881250 144923 970533 887896 145919 968443 894564 147014
966271 901249 148180 964021 907950 149370 961681 914672 150520 959276 921407 151566
956808 928152 152409 954287 934908 152921 951726 941671 152925 949151 948435 152178
946602 955190 150328 944152 961916 146861 941896 968590 140956 940015 975158 131326
"""

_INFERNO = """
1462 466 13866 2267 1270 18570 3299 2249 24239 4547 3392 30909
6006 4692 38558 7676 6136 46836 9561 7713 55143 11663 9417 63460
13995 11225 71862 16561 13136 80282 19373 15133 88767 22447 17199 97327
25793 19331 105930 29432 21503 114621 33385 23702 123397 37668 25921 132232
42253 28139 141141 46915 30324 150164 51644 32474 159254 56449 34569 168414
61340 36590 177642 66331 38504 186962 71429 40294 196354 76637 41905 205799
81962 43328 215289 87411 44556 224813 92990 45583 234358 98702 46402 243904
104551 47008 253430 110536 47399 262912 116656 47574 272321 122908 47536 281624
129285 47293 290788 135778 46856 299776 142378 46242 308553 149073 45468 317085
155850 44559 325338 162689 43554 333277 169575 42489 340874 176493 41402 348111
183429 40329 354971 190367 39309 361447 197297 38400 367535 204209 37632 373238
211095 37030 378563 217949 36615 383522 224763 36405 388129 231538 36405 392400
238273 36621 396353 244967 37055 400007 251620 37705 403378 258234 38571 406485
264810 39647 409345 271347 40922 411976 277850 42353 414392 284321 43933 416608
290763 45644 418637 297178 47470 420491 303568 49396 422182 309935 51407 423721
316282 53490 425116 322610 55634 426377 328921 57827 427511 335217 60060 428524
341500 62325 429425 347771 64616 430217 354032 66925 430906 360284 69247 431497
366529 71579 431994 372768 73915 432400 379001 76253 432719 385228 78591 432955
391453 80927 433109 397674 83257 433183 403894 85580 433179 410113 87896 433098
416331 90203 432943 422549 92501 432714 428768 94790 432412 434987 97069 432039
441207 99338 431594 447428 101597 431080 453651 103848 430498 459875 106089 429846
466100 108322 429125 472328 110547 428334 478558 112764 427475 484789 114974 426548
491022 117179 425552 497257 119379 424488 503493 121575 423356 509730 123769 422156
515967 125960 420887 522206 128150 419549 528444 130341 418142 534683 132534 416667
540920 134729 415123 547157 136929 413511 553392 139134 411829 559624 141346 410078
565854 143567 408258 572081 145797 406369 578304 148039 404411 584521 150294 402385
590734 152563 400290 596940 154848 398125 603139 157151 395891 609330 159474 393589
615513 161817 391219 621685 164184 388781 627847 166575 386276 633998 168992 383704
640135 171438 381065 646260 173914 378359 652369 176421 375586 658463 178962 372748
664540 181539 369846 670599 184153 366879 676638 186807 363849 682656 189501 360757
688653 192239 357603 694627 195021 354388 700576 197851 351113 706500 200728 347777
712396 203656 344383 718264 206636 340931 724103 209670 337424 729909 212759 333861
735683 215906 330245 741423 219112 326576 747127 222378 322856 752794 225706 319085
758422 229097 315266 764010 232554 311399 769556 236077 307485 775059 239667 303526
780517 243327 299523 785929 247056 295477 791293 250856 291390 796607 254728 287264
801871 258674 283099 807082 262692 278898 812239 266786 274661 817341 270954 270390
822386 275197 266085 827372 279517 261750 832299 283913 257383 837165 288385 252988
841969 292933 248564 846709 297559 244113 851384 302260 239636 855992 307038 235133
860533 311892 230606 865006 316822 226055 869409 321827 221482 873741 326906 216886
878001 332060 212268 882188 337287 207628 886302 342586 202968 890341 347957 198286
894305 353399 193584 898192 358911 188860 902003 364492 184116 905735 370140 179350
909390 375856 174563 912966 381636 169755 916462 387481 164924 919879 393389 160070
923215 399359 155193 926470 405389 150292 929644 411479 145367 932737 417627 140417
935747 423831 135440 938675 430091 130438 941521 436405 125409 944285 442772 120354
946965 449191 115272 949562 455660 110164 952075 462178 105031 954506 468744 99874
956852 475356 94695 959114 482014 89499 961293 488716 84289 963387 495462 79073
965397 502249 73859 967322 509078 68659 969163 515946 63488 970919 522853 58367
972590 529798 53324 974176 536780 48392 975677 543798 43618 977092 550850 39050
978422 557937 34931 979666 565057 31409 980824 572209 28508 981895 579392 26250
982881 586606 24661 983779 593849 23770 984591 601122 23606 985315 608422 24202
985952 615750 25592 986502 623105 27814 986964 630485 30908 987337 637890 34916
987622 645320 39886 987819 652773 45581 987926 660250 51750 987945 667748 58329
987874 675267 65257 987714 682807 72489 987464 690366 79990 987124 697944 87731
986694 705540 95694 986175 713153 103863 985566 720782 112229 984865 728427 120785
984075 736087 129527 983196 743758 138453 982228 751442 147565 981173 759135 156863
980032 766837 166353 978806 774545 176037 977497 782258 185923 976108 789974 196018
974638 797692 206332 973088 805409 216877 971468 813122 227658 969783 820825 238686
968041 828515 249972 966243 836191 261534 964394 843848 273391 962517 851476 285546
960626 859069 298010 958720 866624 310820 956834 874129 323974 954997 881569 337475
953215 888942 351369 951546 896226 365627 950018 903409 380271 948683 910473 395289
947594 917399 410665 946809 924168 426373 946392 930761 442367 946403 937159 458592
946903 943348 474970 947937 949318 491426 949545 955063 507860 951740 960587 524203
954529 965896 540361 957896 971003 556275 961812 975924 571925 966249 980678 587206
971162 985282 602154 976511 989753 616760 982257 994109 631017 988362 998364 644924
"""

_LISTED = {"viridis": _VIRIDIS, "plasma": _PLASMA, "inferno": _INFERNO}

# BT.601 full-range RGB -> YCbCr (as JPEG/libjpeg), chroma rows scaled by sqrt(1/2) so that a
# chroma difference counts half as much as the same luma difference in squared distance.
_YCBCR = np.array([[0.299, 0.587, 0.114],
                   [-0.168736, -0.331264, 0.5],
                   [0.5, -0.418688, -0.081312]]) * np.array([[1.0], [0.5**0.5], [0.5**0.5]])
METRICS = {"rgb": np.eye(3), "ycbcr": _YCBCR}


def check_name(name: str) -> str:
    """`name` if it is a known path, else a ValueError listing the known ones."""
    if name not in NAMES:
        raise ValueError(f"unknown colormap {name!r}; expected one of {', '.join(NAMES)}")
    return name


def vertices(name: str) -> np.ndarray:
    """Polyline vertices of path `name`: float64 (n_segments + 1, 3), RGB in 0..255."""
    check_name(name)
    if name == "rainbow":
        return _RAINBOW.copy()
    if name == "gray":
        return np.array([[0.0, 0.0, 0.0], [255.0, 255.0, 255.0]])
    millionths = np.array(_LISTED[name].split(), np.float64).reshape(256, 3)
    return millionths / 1e6 * 255.0


def segment_resolution(name: str) -> int:
    """Table positions per segment: the largest multiple of 255 keeping positions in uint16."""
    n = len(vertices(name)) - 1
    return 255 * max(1, 65535 // (255 * n))


def resolution(name: str) -> int:
    """Position of the path's end in table units (t = q / resolution)."""
    return segment_resolution(name) * (len(vertices(name)) - 1)


def rgb_at(t: np.ndarray, name: str) -> np.ndarray:
    """The 8-bit colour at path parameter t in [0, 1] (clipped; NaN -> 0); uint8 (..., 3).

    The rainbow is quantized *along* the path to its nearest 8-bit level (round(t * 1785)), so
    every output lies exactly on the path; gray rounds 255 t. The 255-segment colormaps
    interpolate linearly between matplotlib's entries and round each channel (within 0.5 of
    the path), through a table of 256 steps per segment (<= 0.02 colour units off the exact
    interpolation). One table gather per pixel.
    """
    steps, lut = _colour_lut(check_name(name))
    idx = np.nan_to_num(np.asarray(t, np.float64), nan=0.0) * steps
    np.clip(idx, 0, steps, out=idx)
    rgba = np.take(lut, np.rint(idx, out=idx).astype(np.int32)).view(np.uint8)
    rgba = rgba.reshape(idx.shape + (4,))
    flat = rgba.reshape(-1, rgba.shape[-2] if rgba.ndim >= 3 else 1, 4)
    return cv2.cvtColor(flat, cv2.COLOR_RGBA2RGB).reshape(idx.shape + (3,))


@functools.lru_cache(maxsize=None)
def _colour_lut(name: str) -> tuple[int, np.ndarray]:
    """(steps, uint32 RGBA colours of t = i / steps for i = 0..steps) for `rgb_at`."""
    v = vertices(name)
    n = len(v) - 1
    if name == "rainbow":
        steps = 255 * n
        level = np.arange(steps + 1)
        seg = np.minimum(level // 255, n - 1)
        unit = (v[1:] - v[:-1]) / 255                     # +-1 / 0 per channel and edge
        rgb = v[:-1][seg] + unit[seg] * (level - 255 * seg)[:, None]
    else:
        steps = 255 if n == 1 else 256 * n
        x = np.arange(steps + 1) * (n / steps)
        seg = np.minimum(x.astype(np.int64), n - 1)
        rgb = v[seg] + (x - seg)[:, None] * (v[seg + 1] - v[seg])
    rgba = np.zeros((steps + 1, 4), np.uint8)
    rgba[:, :3] = np.clip(np.rint(rgb), 0, 255)
    return steps, rgba.view(np.uint32).reshape(-1)


def rgb_keys(rgb: np.ndarray) -> np.ndarray:
    """uint32 (...) keys r | g << 8 | b << 16 of a C-contiguous uint8 (..., 3) image.

    OpenCV widens RGB to RGBA (alpha 255) in one SIMD pass; the little-endian uint32 view of
    each RGBA pixel is the key plus 255 << 24, masked off in place. About 1 ms for 2 Mpx, far
    cheaper than shifting and or-ing three channels in numpy.
    """
    keys = cv2.cvtColor(as_rows(rgb), cv2.COLOR_RGB2RGBA).view(np.uint32)[..., 0]
    keys &= np.uint32(0xFFFFFF)
    return keys.reshape(rgb.shape[:-1])


def as_rows(rgb: np.ndarray) -> np.ndarray:
    """A (rows, cols, 3) view of a C-contiguous (..., 3) image ((N, 3) becomes (N, 1, 3))."""
    return rgb.reshape(-1, rgb.shape[-2] if rgb.ndim >= 3 else 1, 3)


def row_blocks(rows: int, cols: int, pixels: int = 1 << 16):
    """Row slices of about `pixels` pixels each.

    Decoders run block by block so their temporaries stay small (in cache, and reused by the
    allocator instead of page-faulting fresh memory on every call); that is worth ~2x.
    """
    step = max(1, pixels // max(cols, 1))
    return [slice(r, r + step) for r in range(0, rows, step)]


def check_rgb(rgb, where: str) -> np.ndarray:
    """`rgb` as a C-contiguous uint8 (..., 3) array, or a TypeError/ValueError naming `where`."""
    if not isinstance(rgb, np.ndarray):
        raise TypeError(f"{where} expects a numpy uint8 array (..., 3), got {type(rgb).__name__}")
    if rgb.dtype != np.uint8:
        raise TypeError(f"{where} expects uint8 RGB, got dtype {rgb.dtype} "
                        "(convert 0..255 colours to uint8)")
    if rgb.ndim < 2 or rgb.shape[-1] != 3:
        raise ValueError(f"{where} expects shape (..., H, W, 3) or (N, 3), got {rgb.shape}")
    return np.ascontiguousarray(rgb)


@functools.lru_cache(maxsize=None)
def nearest_table(name: str, metric: str = "rgb") -> np.ndarray:
    """uint16 (256**3,) path position of the nearest point to every 8-bit colour (see module doc).

    Built on first use (0.5 s for the rainbow, 4-5 s for the 255-segment colormaps, on one
    core) and kept for the life of the process (32 MB each). Read-only.
    """
    check_name(name)
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    if name == "rainbow" and metric == "rgb":
        table = _rainbow_rgb_table()
    else:
        table = _polyline_table(vertices(name), segment_resolution(name), METRICS[metric], name)
    table.flags.writeable = False
    return table


def _rainbow_rgb_table() -> np.ndarray:
    """Exact integer nearest point on the cube-edge path for the whole cube at once.

    On an axis-aligned edge the squared distance splits into per-channel terms and the
    projection of an integer colour is an integer level, so `rainbow_levels` broadcasts over
    the cube in int32 with no rounding anywhere; the jax decoder runs the same function.
    """
    v = np.arange(256, dtype=np.int32)
    level = rainbow_levels(v[None, None, :], v[None, :, None], v[:, None, None])  # [b, g, r]
    scale = segment_resolution("rainbow") // 255
    return (level.reshape(-1) * scale).astype(np.uint16)


def rainbow_levels(r, g, b, xp=np):
    """Nearest rainbow level (0..1785) of colours given as int32 channel arrays, in numpy or
    jax.numpy (`xp`); equals `nearest_table("rainbow") // 36` exactly, ties included."""
    best = level = None
    for k in range(len(_RAINBOW) - 1):
        a_, b_ = _RAINBOW[k].astype(int), _RAINBOW[k + 1].astype(int)
        ch = int(np.flatnonzero(a_ != b_)[0])
        chans = (r, g, b)
        d2 = 0
        for c in range(3):
            if c != ch:
                d2 = d2 + (chans[c] - int(a_[c])) ** 2
        s = chans[ch] if b_[ch] > a_[ch] else 255 - chans[ch]
        lv = 255 * k + s
        if k == 0:
            best, level = d2, lv
        else:
            closer = d2 < best
            best = xp.where(closer, d2, best)
            level = xp.where(closer, lv, level)
    return level


# Child offsets of an octree cell, (3, 8): child k sits at bits (k >> 2, k >> 1, k) & 1 of
# (r, g, b).
_CHILD = np.array([[k >> 2 & 1, k >> 1 & 1, k & 1] for k in range(8)], np.float64).T
_TOP = 64  # side of the independent chunks the cube is split into


def _polyline_table(verts: np.ndarray, seg_res: int, metric: np.ndarray, name: str) -> np.ndarray:
    """Exact nearest point on a polyline for all 256**3 colours, by octree pruning.

    Work happens in metric space (x -> metric @ x; Euclidean there). Each 64**3 chunk is
    refined 64 -> 32 -> ... -> 1 voxel; every cell keeps the segments that may be nearest to
    one of its voxels. With b the segment nearest to the cell centre c and n_s the unit vector
    from segment s to c, convexity of the distance gives, for every voxel at offset e from c
    (|e| <= r): d_s(c + e) >= d_s(c) + n_s.e and d_b(c + e) <= d_b(c) + n_b.e + r^2 / (2 d_b(c)).
    So s can go when d_s - d_b > r |n_s - n_b| + r^2 / (2 d_b), or when d_s - d_b > 2 r
    (triangle inequality). Far from the path this keeps ~3 segments per voxel instead of
    dozens. Pruning runs in float32 (distances from explicit differences, so the error is
    relative, and a 1e-3 margin); the voxel level compares float64 distances. Arrays are
    child-major, (8, n_pairs), so broadcasts run along rows.
    """
    if len(verts) == 2:
        return _segment_table(verts, seg_res, metric)
    a = verts[:-1] @ metric.T
    u = (verts[1:] - verts[:-1]) @ metric.T
    len2 = (u * u).sum(1)
    inv_len2 = np.divide(1.0, len2, out=np.zeros_like(len2), where=len2 > 0)
    off = metric @ _CHILD                                        # (3, 8) metric-space offsets
    # Half-diagonal of a cell of side 1 in metric space (farthest corner from the centre).
    corners = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], np.float64)
    radius_unit = np.sqrt(((corners @ metric.T) ** 2).sum(1)).max() / 2
    geo = {dt: {"a": a.astype(dt), "u": u.astype(dt), "len2": len2.astype(dt),
                "inv_len2": inv_len2.astype(dt), "u_off": (u @ off).T.astype(dt),
                "off": off.astype(dt), "off2": (off * off).sum(0).astype(dt)}
           for dt in (np.float32, np.float64)}
    out = np.empty(256**3, np.uint16)
    k8 = np.arange(8)[:, None]
    chunks = [(r, g, b) for r in range(0, 256, _TOP) for g in range(0, 256, _TOP)
              for b in range(0, 256, _TOP)]
    for origin in tqdm(chunks, desc=f"{name} nearest-point table", leave=False, disable=None):
        org = np.array([origin], np.float64)                     # cell origins (RGB), (n_cells, 3)
        seg = np.arange(len(a))                                  # candidate pairs, grouped by cell
        cell = np.zeros(len(a), np.int64)
        count = np.array([len(a)])
        size = _TOP
        while True:
            child = size // 2
            starts = np.concatenate(([0], np.cumsum(count)[:-1]))
            g = geo[np.float64 if child == 1 else np.float32]
            dt = g["a"].dtype.type
            # w0 = p - a for the first child-cell centre p of every (cell, segment) pair; the
            # other children add child * off_k.
            w0 = _matvec(org[cell] + (child - 1) / 2, metric).astype(dt) - g["a"][seg]   # (n, 3)
            us = g["u"][seg]
            wu = _dot3(w0, us) + dt(child) * g["u_off"][:, seg]                         # (8, n)
            t = np.clip(wu * g["inv_len2"][seg], 0, 1)
            if child == 1:                       # voxels: exact float64 distances, nearest wins
                ww = (_dot3(w0, w0) + 2 * _child_dots(_matvec(w0, metric.T))) + g["off2"][:, None]
                d2 = ww - t * (2 * wu - t * g["len2"][seg])
                best = _group_argmin(d2, starts, count)                   # (8, n_cells)
                q = np.rint((seg[best] + np.take_along_axis(t, best, axis=1)) * seg_res)
                vox = (org[None, :, :] + _CHILD.T[:, None, :]).astype(np.int64)
                out[vox[..., 0] | vox[..., 1] << 8 | vox[..., 2] << 16] = q.astype(np.uint16)
                break
            q = [w0[:, c] + dt(child) * g["off"][c][:, None] - t * us[:, c] for c in range(3)]
            d = np.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2])                       # (8, n)
            best = _group_argmin(d, starts, count)
            d_best = np.repeat(np.take_along_axis(d, best, axis=1), count, axis=1)
            inv_d = dt(1) / np.maximum(d, dt(1e-12))
            cos = np.zeros_like(d)                                                      # n_s . n_b
            for q_c in q:
                n_c = q_c * inv_d
                cos += n_c * np.repeat(np.take_along_axis(n_c, best, axis=1), count, axis=1)
            r = dt((child - 1) * radius_unit)
            slack = (r * np.sqrt(np.maximum(2 - 2 * cos, 0))
                     + r * r / (2 * np.maximum(d_best, dt(1e-12))))
            slack = np.where((d_best > 1e-3) & (d > 1e-3), np.minimum(slack, 2 * r), 2 * r)
            keep = d - d_best <= slack + dt(1e-3)
            # Regroup the surviving pairs by child cell (cell-major, then child, then segment).
            key = (cell[None, :] * 8 + k8)[keep]
            seg = np.broadcast_to(seg[None, :], keep.shape)[keep]
            order = np.argsort(key, kind="stable")
            cell, seg = key[order], seg[order]
            count = np.bincount(cell, minlength=8 * len(org))
            org = (org[:, None, :] + child * _CHILD.T[None]).reshape(-1, 3)
            size = child
    return out


def _dot3(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise dot product of (n, 3) arrays, spelled out (faster than sum over a size-3 axis)."""
    return x[:, 0] * y[:, 0] + x[:, 1] * y[:, 1] + x[:, 2] * y[:, 2]


def _matvec(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """x @ m.T for x (n, 3), spelled out column by column (tiny BLAS calls spend more on
    threading than on arithmetic); the identity is returned as is."""
    if m is None or np.array_equal(m, np.eye(3)):
        return x
    out = np.empty_like(x)
    for i in range(3):
        out[:, i] = x[:, 0] * m[i, 0] + x[:, 1] * m[i, 1] + x[:, 2] * m[i, 2]
    return out


def _child_dots(v: np.ndarray) -> np.ndarray:
    """(8, n) dot products v . o_k with the child offsets o_k in {0, 1}^3 (r, g, b bits)."""
    r, g, b = v[:, 0], v[:, 1], v[:, 2]
    gb = g + b
    return np.stack([np.zeros_like(r), b, g, gb, r, r + b, r + g, r + gb])


def _group_argmin(x: np.ndarray, starts: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Per row of x (8, n), the column of the first minimum of every contiguous column group.

    Groups are short at the fine levels, so a loop over group positions beats `reduceat`.
    """
    if count.max() > 24:
        low = np.minimum.reduceat(x, starts, axis=1)
        cols = np.arange(x.shape[1])
        first = np.where(x <= np.repeat(low, count, axis=1), cols, x.shape[1])
        return np.minimum.reduceat(first, starts, axis=1)
    best = np.repeat(starts[None, :], x.shape[0], axis=0)
    best_val = x[:, starts]
    for j in range(1, int(count.max())):
        groups = np.flatnonzero(count > j)
        col = starts[groups] + j
        val, cur = x[:, col], best_val[:, groups]
        better = val < cur                       # strict: ties keep the earlier segment
        best_val[:, groups] = np.where(better, val, cur)
        best[:, groups] = np.where(better, col, best[:, groups])
    return best


def _segment_table(verts: np.ndarray, seg_res: int, metric: np.ndarray) -> np.ndarray:
    """Single-segment path (gray): the projection is affine in the colour, so broadcast it."""
    a, u = metric @ verts[0], metric @ (verts[1] - verts[0])
    coef = (metric.T @ u) / (u @ u)                              # d t / d (r, g, b)
    v = np.arange(256, dtype=np.float64)
    t = (v[:, None, None] * coef[2] + v[None, :, None] * coef[1]) + (v[None, None, :] * coef[0]
                                                                     - (a @ u) / (u @ u))
    return np.rint(np.clip(t, 0.0, 1.0) * seg_res).astype(np.uint16).reshape(-1)
