"""Hand-made scoring cases, aimed at the places where scorers tend to differ: contractions, number
words, articles, punctuation, commas and periods in numbers, case, unanimous vs split annotators,
"'s", ANLS around its 0.5 threshold, percentages and years in relaxed accuracy, OCRBench's rules."""

from __future__ import annotations


def ten(answer: str, agreeing: int = 10, other: str = "other") -> list[str]:
    """Ten annotator answers: `agreeing` of them `answer`, the rest `other`."""
    return [answer] * agreeing + [other] * (10 - agreeing)


VQA = [  # (prediction, annotator answers)
    # contractions: only the upstream table's exact spellings
    ("dont", ten("don't")), ("don't", ten("dont")), ("shes", ten("she's")), ("she's", ten("shes", 4, "her")),
    ("hes", ten("he's", 3, "him")), ("he's", ten("hes")), ("couldntve", ten("couldn't've")),
    ("couldnt've", ten("couldn't've", 5, "could")), ("somebody'd", ten("somebodyd")), ("Im", ten("i'm")),
    ("ive", ten("i've", 6, "ive")), ("idve", ten("i'd've")), ("lets", ten("let's")), ("let's go", ten("lets go")),
    ("twas", ten("'twas")), ("yall", ten("y'all", 7, "you all")), ("whats that", ten("what's that")),
    ("wont", ten("won't", 2, "will not")), ("o'clock", ten("oclock")), ("whats", ten("whats")),
    # 's
    ("man's", ten("man's")), ("mans", ten("man's")), ("man 's", ten("man's")), ("It's red", ten("its red")),
    ("its", ten("it's", 5, "its")), ("children's book", ten("childrens book", 4, "book")),
    ("one's own", ten("ones own")), ("what's", ten("whats")), ("yes it's", ten("yes its")),
    # number words
    ("two", ten("2")), ("Two.", ten("2", 3, "3")), ("none", ten("0")), ("zero", ten("none")), ("ten", ten("10")),
    ("eleven", ten("11")), ("one of them", ten("1 of them")), ("2 dogs", ten("two dogs")),
    # articles
    ("the cat", ten("cat", 1, "dog")), ("A dog", ten("dog")), ("an apple", ten("apple", 7, "pear")),
    ("the", ["a"] * 3 + ["b"] * 7),
    # punctuation
    ("yes, it is", ten("yes it is")), ("black-and-white", ten("black and white")),
    ("black - white", ten("black white")), ("up/down", ten("up down")), ("(left)", ten("left")),
    ("left!", ten("left")), ("what?", ten("what")), ('"stop"', ten("stop")), ("e-mail", ten("email", 5, "e mail")),
    ("a;b", ten("a b")), ("#1", ten("1")), ("50%", ten("50")), ("$5", ten("5")),
    # commas and periods inside numbers
    ("1,000", ten("1000")), ("1,000,000", ten("1000000")), ("1,,000", ten("1000")), ("1,,000", ten("1 000")),
    ("1, 000", ten("1000")), ("3.5", ten("3.5")), ("3.50", ten("3.5")), ("3.", ten("3")), (".5", ten("0.5", 5, ".5")),
    ("Dr. Who", ten("dr who")), ("U.S.A.", ten("usa")), ("a.b.c", ten("abc")), ("." * 40 + "x", ten("x")),
    ("." * 33 + "yes", ten("yes")), ("1,000 dollars, roughly", ten("1000 dollars roughly")), ("12:30", ten("1230")),
    # case and whitespace
    ("YES", ten("yes")), ("  Yes \n", ten("yes")), ("red\tand blue", ten("red and blue")), ("Red", ten("RED")),
    # unanimous and split annotators
    ("red", ten("red", 2, "blue")), ("blue", ten("red", 2, "blue")), ("green", ten("red")),
    ("yes", ten("yes", 3, "no")), ("no", ten("yes", 3, "no")), ("yes", ["Yes", "yes.", "yes!"] + ["no"] * 7),
    ("Yes.", ["yes", "no"]), ("cat", ["cat", "cat", "dog"]), ("", ["", "", "", "x"]),
    ("unanswerable", ten("unanswerable", 6, "unsuitable")), ("Unanswerable.", ten("unanswerable", 6, "unsuitable")),
]

GQA = [  # (prediction, answer)
    ("yes", "yes"), ("Yes", "yes"), ("Yes.", "yes"), ("yes ", "yes"), (" yes", "yes"), ("no", "No"), ("NO.", "no"),
    ("the cat", "cat"), ("cat", "the cat"), ("two", "2"), ("2", "two"), ("black-and-white", "black and white"),
    ("black and white", "black and white"), ("blackandwhite", "black and white"), ("t-shirt", "t-shirt"),
    ("tshirt", "t-shirt"), ("T-Shirt", "t-shirt"), ("left.", "left"), ("left!!!", "left"), ("(left)", "left"),
    ("left ,", "left"), ("man's", "mans"), ("mans", "man's"), ("dont", "don't"), ("1,000", "1000"), ("3.5", "35"),
    ("3.5", "3.5"), ("", ""), ("", "no"), ("no", ""), ("İ", "i"), ("İstanbul", "i̇stanbul"), ("ß", "ss"),
    ("ẞ", "ß"), ("Ａ", "ａ"), ("café", "cafe"), ("yes\x00", "yes"), ("yes\x00.", "yes"), ("a\x00b", "ab"),
    ("fork & knife", "fork and knife"), ("red,white", "redwhite"), ("red, white", "red white"),
    ("red , white", "red white"), ("on the left", "left"), ("Left side", "left"), ("Yes it is", "yes"),
    ("Maybe?", "maybe"), ("e.g.", "eg"), ("U.S.", "us"), ("100%", "100"), ("$5", "5"), ("5 $", "5"),
    ('"quoted"', "quoted"), ("it's", "its"), ("'s", "s"), ("–", ""), ("...", ""), ("?", ""), ("a_b", "ab"),
    ("a\tb", "a b"), ("x\ny", "x y"), ("  spaced  out ", "spaced  out"), ("first", "1st"), ("grey", "gray"),
    ("Top", "top"), ("wooden", "wood"),
]

POPE_REPLIES = ["yes", "Yes", "YES", " yes ", "yes.", "Yes, there is.", "no", "No", "No.", "no,", "nope", "not",
                "Yes\n", "y", "", "There is a dog."]
POPE = [(reply, answer) for reply in POPE_REPLIES for answer in ("yes", "no", "Yes ", " No")]

MME_REPLIES = ["Yes", "No", "yes.", "Yes, it is.", "No, it isn't.", "y", "n", "Y.", "x", "Maybe", "Not sure",
               "noon", "yesterday", "I think yes", "no yes", "Y.E.S.", "YES!", "Yeah"]
MME = [(reply, answer) for reply in MME_REPLIES for answer in ("Yes", "No", "yes.", " No.")]

SCIENCEQA_REPLIES = ["A", "a", "A.", "A. cat", "(A)", "A)", "A:", "The answer is A.", "B", "b.", "B. dog", " B ",
                     "AB", "A.B", "a. cat", "Ａ.", "A .", "Answer: A", ""]
SCIENCEQA = [(reply, letter) for reply in SCIENCEQA_REPLIES for letter in ("A", "B", "C", "E")]

ANLS = [  # (prediction, accepted answers)
    ("hello", ["hello"]), ("Hello", ["hello"]), ("helo", ["hello"]), ("hxllx", ["hello"]), ("hxxlx", ["hello"]),
    ("ab", ["abcd"]), ("abc", ["abcdef"]), ("abcde", ["abcdefghij"]), ("abcd", ["abcdefghi"]), ("a", ["ab"]),
    ("", ["ab"]), ("", [""]), ("x", [""]), ("  hello   world ", ["hello world"]), ("hello world", ["hello   world"]),
    ("hello  world", ["hello wxrld"]), ("ß", ["ss"]), ("strasse", ["straße"]), ("straße", ["strasse"]),
    ("1990", ["1990", "nineteen ninety"]), ("199", ["1990", "1991"]), ("$1.5 million", ["1.5 million", "$1.5m"]),
    ("12/03/2001", ["12-03-2001"]), ("Dr. Smith", ["dr smith"]), ("İ", ["i̇"]), ("a\u00a0b", ["a b"]),
    ("ABC", ["abd"]), ("abcdef", ["abcxyz"]), ("abcdefg", ["abcxyzw"]), ("The answer is 42", ["42"]),
    ("42", ["The answer is 42"]), ("forty two", ["42"]), ("yes", ["Yes", "yes."]), ("no", ["yes"]),
    ("abcdefghij", ["abcdefghxy"]), ("abcdefghij", ["abcdexyzwv"]), ("abcdefghij", ["abcdxyzwvu"]),
    ("0.5", ["0.50"]), ("50%", ["50 %"]), ("$15,000", ["15,000"]), ("15000", ["15,000"]), ("Jan 5", ["January 5"]),
    ("ＡＢＣ", ["abc"]), ("ab\ncd", ["ab cd"]), ("ab\tcd", ["ab cd"]), ("  ", ["x"]), ("x", ["  x  "]),
    ("New York", [" new york "]), ("NEW YORK CITY", ["new york"]), ("university", ["universty", "univ"]),
    ("cat", ["dog", "cats", "act"]), ("tac", ["cat"]), ("ac", ["abc"]), ("abcd", ["abdc"]), ("ab", ["ba"]),
    ("Mr", ["Mr."]), ("1", ["1.0"]), ("10", ["1.0"]), ("x" * 30, ["x" * 15]), ("x" * 30, ["x" * 14]),
    ("résumé", ["resume"]), ("naïve", ["naive"]), ("straße", ["STRASSE"]),
]

CHARTQA = [  # (prediction, answer)
    ("10", "10"), ("10.5", "10"), ("10.51", "10"), ("9.5", "10"), ("9.49", "10"), ("105", "100"), ("95", "100"),
    ("94.99", "100"), ("2019", "2020"), ("2010", "2020"), ("1900", "2020"), ("2020", "2019"), ("45%", "45"),
    ("45%", "45%"), ("45", "45%"), ("0.45", "45%"), ("45 %", "45%"), ("45%%", "45%"), ("%", "%"), ("0", "0"),
    ("0.0", "0"), ("0", "0.0"), ("1e3", "1000"), ("1,000", "1000"), ("1000", "1,000"), ("1_000", "1000"),
    ("inf", "inf"), ("nan", "nan"), ("Yes", "yes"), ("yes ", "yes"), ("Yes.", "yes"), ("-5", "-5"), ("-5", "5"),
    ("5", "-5"), ("-4.8", "-5"), ("+5", "5"), (" 5", "5"), ("5", "5 "), ("five", "5"), ("0.05", "0.05"),
    ("0.0525", "0.05"), ("1.05", "1"), ("0.95", "1"), ("2.1", "2"), ("Africa", "africa"),
    ("North America", "North america"), ("12.5%", "0.125"), ("0.125", "12.5%"), ("True", "true"),
    ("١٢", "12"), ("12", "١٢"), ("²", "2"), ("0x10", "16"), ("1/2", "0.5"), ("3.0", "3"), ("3", "3.0"),
    ("-0", "0"), ("0", "-0"), ("1e-3", "0.001"), ("Infinity", "inf"), ("100", "nan"), ("nan", "5"),
    (" 45% ", "45%"), ("45%", "0.45"), ("$5", "5"), ("5 million", "5"), ("14.805", "14.1"), ("29.61", "28.2"),
    ("13.395", "14.1"),
]

OCR = "IIIT5K"
HME = "HME100k"
OCRBENCH = [  # (prediction, accepted answers, OCRBench source dataset)
    ("The text says HELLO", ["hello"], OCR), ("HELL0", ["hello"], "SVT"), ("hello world", ["hello\nworld"], "IC13_857"),
    ("hello\nworld", ["hello world"], "IC15_1811"), ("ＨＥＬＬＯ", ["hello"], "SVTP"), ("hello", ["ＨＥＬＬＯ"], "CT80"),
    ("a\u3000b", ["a b"], "CUTE80"), ("ab", ["a b"], "Total-Text"), ("", ["a"], "WordArt"), ("anything", [""], "IAM"),
    ("x", ["  "], "ReCTS"), ("Stop", ["stop", "STOP"], "ORAND"), ("go", ["stop", "halt"], "NonSemanticText"),
    ("12,345", ["12345"], "SemanticText"), ("The price is $5.00", ["5.00"], "STVQA"), ("İ", ["i"], "textVQA"),
    ("i", ["İ"], "ocrVQA"), ("ß", ["ss"], "ESTVQA"), ("Hello", "hello", "docVQA"),
    ("HELLO!", "hello", "infographicVQA"),
    ("the answer: 42%", ["42%"], "ChartQA"), ("42", ["42%"], "ChartQA"), ("Total: 1,200", ["1,200", "1200"], "SROIE"),
    ("company name", ["Company Name"], "FUNSD"), ("  padded  ", ["padded"], "POIE"), ("pad ded", ["padded"], "POIE"),
    ("x^{2}+1", ["x^{2}+1"], HME), ("x ^ { 2 } + 1", ["x^{2}+1"], HME), ("X^{2}+1", ["x^{2}+1"], HME),
    ("$x^{2}+1$", ["x^{2}+1"], HME), ("x^{2}\n+1", ["x^{2}+1"], HME), ("x^{2}\t+1", ["x^{2}+1"], HME),
    ("ｘ^{2}", ["x^{2}"], HME), ("ｘ^{2}", ["x^{2}"], OCR), ("\\frac{1}{2}", ["\\frac { 1 } { 2 }"], HME),
    ("\\frac{1}{3}", ["\\frac { 1 } { 2 }"], HME), ("a+b", "a + b", HME), ("a+b", "a + b", OCR),
    ("a + b", "a+b", OCR), ("", [""], HME), ("y", ["x", "y"], HME), ("\\sqrt{x}", ["\\sqrt { x }"], HME),
    ("\\sqrt{X}", ["\\sqrt { x }"], HME), ("x=1", ["x = 1"], HME), ("x=1", ["x = 1"], "HME100K"),
    ("Abc", ["abc"], HME), ("Abc", ["abc"], "hme100k"), ("12 34", ["1234"], HME), ("12 34", ["1234"], OCR),
    ("1234", ["12 34"], OCR), ("Line one\nline two", ["line one line two"], "FUNSD"),
    ("LINE\n\nTWO", ["line  two"], "FUNSD"), ("ＡＢＣ　ＤＥＦ", ["abc def"], "ReCTS"), ("abc def", ["ＡＢＣ　ＤＥＦ"], "ReCTS"),
    ("ÄÖÜ", ["äöü"], OCR), ("résumé", ["resume"], OCR), ("x", [], OCR), ("x", [], HME),
    ("the word is 'cat'", ["cat"], OCR), ("Catalog", ["cat"], OCR), ("c a t", ["cat"], OCR),
    ("C A T", ["cat"], HME), ("tab\there", ["tab here"], OCR), ("Ｔｅｓｔ１２３", ["test123"], OCR),
]
OCRBENCH_CATEGORIES = [  # question_type per dataset, as OCRBench files them
    ("Regular Text Recognition", "IIIT5K"), ("Irregular Text Recognition", "CUTE80"),
    ("Artistic Text Recognition", "WordArt"), ("Handwriting Recognition", "IAM"),
    ("Digit String Recognition", "ORAND"), ("Non-Semantic Text Recognition", "NonSemanticText"),
    ("Scene Text-centric VQA", "STVQA"), ("Doc-oriented VQA", "docVQA"), ("Key Information Extraction", "FUNSD"),
    ("Handwritten Mathematical Expression Recognition", "HME100k"),
]
