"""What McLaughlin et al. (2014) report: the targets of the replication, in one place.

Sources: the published abstract (J Consult Clin Psychol 82(1), 112-121; PMID 24188510), the NIH
author manuscript (PMC3921691) and the Case Western Reserve University press release of 6 Nov 2013
(repaired / unrepaired split). Where the article and the manuscript differ (the beta: .44 vs .45),
the article's value is the target and the manuscript's is noted.
"""

CITATION = ("McLaughlin, A. A., Keller, S. M., Feeny, N. C., Youngstrom, E. A., & Zoellner, L. A. (2014). "
            "Patterns of therapeutic alliance: Rupture-repair episodes in prolonged exposure for "
            "posttraumatic stress disorder. Journal of Consulting and Clinical Psychology, 82(1), 112-121. "
            "doi:10.1037/a0034696")

#: The sample (abstract).
SAMPLE = {"N": 116, "female_pct": 76.1, "caucasian_pct": 66.0, "age_mean": 36.7, "age_sd": 11.3}

#: Alliance patterns, percent of classifiable clients (abstract: 46% any; press release: 28 / 18).
PATTERN_PCT = {"no_rupture": 54.0, "repaired": 28.0, "unrepaired": 18.0, "any_rupture": 46.0}

#: Pattern x co-occurring MDD and x childhood abuse history (abstract).
CHI2 = {
    "mdd": {"chi2": 2.69, "dof": 2, "n": 82, "p": 0.26},
    "child_abuse": {"chi2": 0.57, "dof": 2, "n": 81, "p": 0.75},
}

#: The N the pattern percentages rest on. The paper does not say; its chi-square tests used
#: 82 (and 81) clients with enough alliance ratings, and 28% / 18% fit 82 (23 / 15 clients).
PATTERN_N = 82

#: Unrepaired rupture -> post-treatment PTSD, controlling for pre: the published article's
#: standardised beta (.44); the NIH author manuscript (PMC3921691) and the press release say .45.
BETA = {"beta": 0.44, "p": 0.001, "beta_manuscript": 0.45}
