//! A judge that holds no model: it spends the cost model's judging time on its device thread
//! (inside the real [`crate::judge::JudgeActor`]) and gives each response a reward that differs
//! within the group, so the learner's advantages are not all zero.

use crate::judge::Judge;
use crate::protocol::{JudgeDetails, RolloutGroup};
use crate::simulated::CostModel;

pub struct SimJudge {
    pub cost: CostModel,
}

impl Judge for SimJudge {
    fn score(&mut self, group: &RolloutGroup) -> Result<(Vec<f32>, JudgeDetails), String> {
        let n = group.rollouts.len();
        let seconds = self.cost.judge_s(n);
        if seconds > 0.0 {
            std::thread::sleep(std::time::Duration::from_secs_f64(seconds));
        }
        let rewards = (0..n)
            .map(|i| ((group.prompt.uid as usize + i * 7) % 11) as f32 / 10.0)
            .collect();
        let details = JudgeDetails {
            judgments: CostModel::pairs(n),
            ..Default::default()
        };
        Ok((rewards, details))
    }
}
