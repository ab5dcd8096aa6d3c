// Mocha's spec reporter, plus the run's totals written as JSON to $KADMIRROR_TEST_STATS so that
// scripts/run.mjs can print one plain `N passed, N failed, N skipped` line after the coverage report.
'use strict'
const { writeFileSync } = require('node:fs')
const Mocha = require('mocha')

const { EVENT_RUN_END } = Mocha.Runner.constants

class TotalsReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options)
    runner.once(EVENT_RUN_END, () => {
      const file = process.env.KADMIRROR_TEST_STATS
      if (!file) return
      const { passes, failures, pending, tests } = runner.stats
      writeFileSync(file, JSON.stringify({ passes, failures, pending, tests }))
    })
  }
}

module.exports = TotalsReporter
